//! PocketBase's request logs (`GET /api/logs`, `/api/logs/stats`, `/api/logs/{id}`,
//! `DELETE /api/logs`), written off the request path. Behaviour checked against PocketBase 0.40
//! (`sdk-tests/logs.test.mjs` passes on both).
//!
//! - **Where:** on SQLite the file `logs.db` beside `data.db` (64 KiB pages, committed with
//!   `synchronous=NORMAL`: a log is not worth an fsync); on PostgreSQL a table `_logs` of the same
//!   database, so every node sees every node's logs.
//! - **How:** a transport hands each finished request to [`RequestLogs::push`], which only queues it
//!   (a bounded channel; when full the entry is dropped and counted). One writer task writes queued
//!   entries in batches: it lets a batch fill for 100 ms (up to 8,192 entries), then writes it in one
//!   transaction.
//!   - **SQLite: one row per batch.** `push` encodes the entry as SQLite's binary JSON (JSONB,
//!     [`basalt_store::jsonb`]); the writer stores the batch as one JSONB array in one row of
//!     `_logs_batches` (with its first/last `created` and lowest/highest id). `_logs` is a view that
//!     unpacks the batches with `jsonb_each`, so the filter language compiles against it as against
//!     a table. A row per entry cost SQLite a B-tree insert, an index insert and their WAL pages per
//!     request (about 2.7 µs, a quarter of a read-by-id); a row per batch costs a copy. The price is
//!     paid by readers: a query scans the entries (about 0.5–4 µs each, docs/benchmarks.md) where
//!     an index answered before. A page is found by its `seq`s first and only its entries are
//!     rendered ([`RequestLogs::entries_at`]).
//!   - **PostgreSQL: one row per entry** in `_logs` (multi-row `INSERT`s).
//! - **What:** every routed request except a successful call of the logs API itself, a CORS
//!   preflight and the realtime event stream. Level 0 on success, 8 on an error answer (with its
//!   message and details).
//! - **Settings** (`logs` of the settings document): `maxDays` (0 turns request logging off; older
//!   entries are pruned every hour and at every settings save; on SQLite a batch goes when its
//!   newest entry is older), `minLevel` (entries below it are not stored), `logIP`, `logAuthId`;
//!   `maxDataSize` is kept and validated.
//! - **Reading:** the filter and sort language of records, compiled against the `_logs` schema
//!   (`id, created, level, message, data`; `data.*` are JSON paths). Default order: oldest first.
//! - **Upgrade:** a data directory whose logs are still in `auxiliary.db` (one row per entry, as
//!   before) has them moved into `logs.db` at start, in one transaction, then the old file removed.
//!
//! **Invariant:** the request path never waits on the logs store: `push` never blocks or awaits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use basalt_core::filter;
use basalt_core::filter::ast::SortItem;
use basalt_core::filter::compile::{Compiler, RequestInfo, MAIN};
use basalt_core::schema::{Collection, CollectionType, Field, FieldType};
use basalt_core::sql::{Dialect, Sql, Value};
use basalt_store::jsonb::{self, Jsonb};
use basalt_store::Store;
use serde_json::{json, Value as Json};

use crate::error::{not_found, ServiceResult};

/// PocketBase's levels (slog): debug -4, info 0, warn 4, error 8.
pub const LEVEL_INFO: i64 = 0;
pub const LEVEL_ERROR: i64 = 8;

/// Entries waiting for the writer at most (about 25 MB); past it new ones are dropped (and counted).
const PENDING: usize = 65_536;
/// Entries moved per batch when reading logs from elsewhere (an older `auxiliary.db`).
const BATCH: usize = 8192;
/// How long the writer lets a batch fill (PocketBase: 3 s or 200 entries).
const LINGER: Duration = Duration::from_millis(100);
/// Longest `data.url` kept (PocketBase's cut), then `...`.
const MAX_URL: usize = 3000;

/// One finished request as a transport saw it.
#[derive(Debug, Clone, Default)]
pub struct RequestEntry {
    /// Standard methods borrowed: no allocation per request.
    pub method: std::borrow::Cow<'static, str>,
    /// Path and query, as requested (percent-encoded).
    pub url: String,
    pub status: u16,
    /// Milliseconds.
    pub exec_ms: f64,
    /// The peer's address and the client's (after trusted proxies), when `logIP` is on.
    pub remote_ip: Option<std::net::IpAddr>,
    pub user_ip: Option<std::net::IpAddr>,
    pub referer: String,
    pub user_agent: String,
    /// The caller's collection name (`_superusers`, `users`, …), empty for a guest.
    pub auth: String,
    pub auth_id: String,
    /// What a failed request answered, when the transport knows.
    pub error: Option<LoggedError>,
    /// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
    pub preflight: bool,
}

/// The error of a failed request as its log entry shows it: the answer's message, and details
/// (field errors as `{field: "cannot be blank"}`, an internal error's text, or null).
#[derive(Debug, Clone)]
pub struct LoggedError {
    pub message: String,
    pub details: Json,
}

impl LoggedError {
    pub fn of(e: &basalt_core::Error, message: &str) -> LoggedError {
        use basalt_core::Error;
        let details = match e {
            Error::Validation { fields, .. } if !fields.is_empty() => Json::Object(
                fields
                    .iter()
                    .map(|(k, f)| {
                        let m = f.message.trim_end_matches('.');
                        let mut c = m.chars();
                        let lower: String = c
                            .next()
                            .map(|f| f.to_lowercase().chain(c).collect())
                            .unwrap_or_default();
                        (k.clone(), json!(lower))
                    })
                    .collect(),
            ),
            Error::Internal(m) => json!(m),
            Error::Unavailable { detail, .. } => json!(detail),
            _ => Json::Null,
        };
        LoggedError {
            message: message.to_string(),
            details,
        }
    }
}

/// Where a transport's authentication step leaves the caller for the request's log entry.
#[derive(Debug, Clone, Default)]
pub struct AuthSlot(Arc<std::sync::OnceLock<(String, String)>>);

impl AuthSlot {
    pub fn set(&self, c: &crate::caller::Caller) {
        let _ = self.0.set((c.collection.name.clone(), c.id().to_string()));
    }
    /// `(collection name, record id)` of the caller, if one authenticated.
    pub fn get(&self) -> Option<(String, String)> {
        self.0.get().cloned()
    }
}

/// A request entry's `data` (keys as PocketBase names them).
struct Data<'a> {
    kind: &'static str,
    method: &'a str,
    url: &'a str,
    status: u16,
    exec_time: f64,
    auth: &'a str,
    auth_id: Option<&'a str>,
    remote_ip: Option<&'a str>,
    user_ip: Option<&'a str>,
    referer: &'a str,
    user_agent: &'a str,
    error: Option<&'a str>,
    details: Option<&'a Json>,
}

/// What a log entry's fields are written into: JSON text (PostgreSQL's rows) or JSONB (SQLite's
/// batches). The caller opens and closes the object.
trait Out {
    fn key(&mut self, k: &str);
    fn str(&mut self, s: &str);
    fn int(&mut self, n: i64);
    fn float(&mut self, f: f64);
    fn json(&mut self, v: &Json);
}

/// JSON text, written straight into one string (every request pays for it).
struct Text(String);

impl Out for Text {
    fn key(&mut self, k: &str) {
        let o = &mut self.0;
        o.push(if o.is_empty() { '{' } else { ',' });
        o.push('"');
        o.push_str(k);
        o.push_str("\":");
    }
    fn str(&mut self, s: &str) {
        push_json_str(&mut self.0, s);
    }
    fn int(&mut self, n: i64) {
        use std::fmt::Write;
        let _ = write!(self.0, "{n}");
    }
    fn float(&mut self, f: f64) {
        use std::fmt::Write;
        match serde_json::Number::from_f64(f) {
            Some(n) => {
                let _ = write!(self.0, "{n}");
            }
            None => self.0.push('0'),
        }
    }
    fn json(&mut self, v: &Json) {
        self.0.push_str(&v.to_string());
    }
}

impl Out for Jsonb {
    fn key(&mut self, k: &str) {
        Jsonb::key(self, k)
    }
    fn str(&mut self, s: &str) {
        Jsonb::str(self, s)
    }
    fn int(&mut self, n: i64) {
        Jsonb::int(self, n)
    }
    fn float(&mut self, f: f64) {
        // JSON text has no NaN either: 0, as the text writer does.
        Jsonb::float(self, if f.is_finite() { f } else { 0.0 })
    }
    fn json(&mut self, v: &Json) {
        Jsonb::value(self, v)
    }
}

impl Data<'_> {
    /// The entry's `data` fields, in PocketBase's order.
    fn write(&self, o: &mut impl Out) {
        o.key("type");
        o.str(self.kind);
        o.key("method");
        o.str(self.method);
        o.key("url");
        o.str(self.url);
        o.key("status");
        o.int(self.status.into());
        o.key("execTime");
        o.float(self.exec_time);
        for (k, v) in [
            ("auth", Some(self.auth)),
            ("authId", self.auth_id),
            ("remoteIP", self.remote_ip),
            ("userIP", self.user_ip),
            ("referer", Some(self.referer)),
            ("userAgent", Some(self.user_agent)),
            ("error", self.error),
        ] {
            if let Some(v) = v {
                o.key(k);
                o.str(v);
            }
        }
        if let Some(d) = self.details {
            o.key("details");
            o.json(d);
        }
    }

    /// The JSON text (PostgreSQL's `data` column).
    fn to_json(&self) -> String {
        let mut t = Text(String::with_capacity(
            160 + self.url.len() + self.user_agent.len() + self.referer.len(),
        ));
        self.write(&mut t);
        t.0.push('}');
        t.0
    }
}

/// One entry as SQLite's batches hold it: `{id, created, level, message, data}` in JSONB, written
/// at the end of `j`. `message` is the concatenation of its parts; `None` leaves it out, for an
/// entry whose message is `data.method + " " + data.url` (most requests), which the view rebuilds
/// ([`ENTRY_COLUMNS`]): a sixth fewer bytes for every later copy of the batch.
fn entry_jsonb(
    j: &mut Jsonb,
    id: &str,
    created: &str,
    level: i64,
    message: Option<&[&str]>,
    data: impl FnOnce(&mut Jsonb),
) {
    let m = j.open(jsonb::OBJECT);
    j.key("id");
    j.str(id);
    j.key("created");
    j.str(created);
    j.key("level");
    j.int(level);
    if let Some(message) = message {
        j.key("message");
        j.str_parts(message);
    }
    j.key("data");
    data(j);
    j.close(m);
}

/// A PostgreSQL `_logs` row.
struct Row {
    id: String,
    created: String,
    seq: i64,
    level: i64,
    message: String,
    data: String,
}

/// Entries made and not yet written: what one batch transaction writes.
#[derive(Default)]
struct Pending {
    /// SQLite: the entries' JSONB back to back inside an array opened at 0 (closed when written).
    docs: Jsonb,
    /// PostgreSQL: the rows.
    rows: Vec<Row>,
    entries: usize,
    /// SQLite: the lowest and highest `created` and id among the entries (the batch row's bounds).
    first: String,
    last: String,
    min_id: String,
    max_id: String,
}

impl Pending {
    /// Adds an entry made by [`entry_jsonb`] (SQLite).
    fn add_doc(&mut self, id: &str, created: &str, doc: &[u8]) {
        fn widen(lo: &mut String, hi: &mut String, v: &str, first: bool) {
            // Reused strings: no allocation once they have grown.
            if first || v < lo.as_str() {
                lo.clear();
                lo.push_str(v);
            }
            if first || v > hi.as_str() {
                hi.clear();
                hi.push_str(v);
            }
        }
        let first = self.entries == 0;
        if first {
            self.docs.buf.clear();
            self.docs.open(jsonb::ARRAY);
        }
        self.docs.buf.extend_from_slice(doc);
        widen(&mut self.first, &mut self.last, created, first);
        widen(&mut self.min_id, &mut self.max_id, id, first);
        self.entries += 1;
    }

    fn add_row(&mut self, row: Row) {
        self.rows.push(row);
        self.entries += 1;
    }
}

/// The pending entries, shared by the request path and the writer.
#[derive(Default)]
struct Queue {
    pending: std::sync::Mutex<Pending>,
    /// Woken by the first entry of an empty batch.
    wake: tokio::sync::Notify,
}

thread_local! {
    /// Where a request thread writes its entry before copying it into the batch (the lock is
    /// held only for the copy).
    static SCRATCH: std::cell::RefCell<Jsonb> = std::cell::RefCell::new(Jsonb::with_capacity(1024));
}

/// The logs store, its queue and its writer.
pub struct RequestLogs {
    store: Arc<dyn Store>,
    coll: Arc<Collection>,
    queue: Arc<Queue>,
    /// Entries dropped because the queue was full, and entries written (metrics).
    pub dropped: AtomicU64,
    pub written: Arc<AtomicU64>,
}

/// The `_logs` schema the filter compiler reads.
fn schema() -> Collection {
    let mut c = Collection::scaffold(CollectionType::Base, "_logs");
    c.id = "_logs".into();
    c.system = true;
    let mut created = Field::new("created", FieldType::Autodate);
    created.system = true;
    c.fields.extend([
        created,
        Field::new("level", FieldType::Number),
        Field::new("message", FieldType::Text),
        Field::new("data", FieldType::Json),
    ]);
    c
}

/// The statements that make the logs store.
///
/// - PostgreSQL: `_logs`, the schema's columns plus `seq` (microseconds at queueing: the insertion
///   order that breaks ties between entries of the same millisecond; not filterable).
/// - SQLite: `_logs_batches`, one row per written batch (`body`: a JSONB array of entries), and the
///   view `_logs` with the same columns as PostgreSQL's table; `seq` is the batch's rowid and the
///   entry's place in it (rowids grow, batches hold at most [`PENDING`] entries).
fn create_table(d: Dialect) -> Vec<Sql> {
    let texts: Vec<String> = match d {
        Dialect::Sqlite => vec![
            "CREATE TABLE IF NOT EXISTS \"_logs_batches\" (\"first\" TEXT NOT NULL, \"last\" TEXT NOT NULL, \
             \"min_id\" TEXT NOT NULL, \"max_id\" TEXT NOT NULL, \"entries\" INTEGER NOT NULL, \"body\" BLOB NOT NULL)"
                .into(),
            // Pruning goes by the newest entry of a batch.
            "CREATE INDEX IF NOT EXISTS \"idx_logs_batches_last\" ON \"_logs_batches\" (\"last\")".into(),
            // Made again at every start: a newer definition replaces an older one.
            "DROP VIEW IF EXISTS \"_logs\"".into(),
            format!(
                "CREATE VIEW \"_logs\" AS SELECT {}, b.rowid * {SEQ_STRIDE} + e.key AS \"seq\" \
                 FROM \"_logs_batches\" AS b, jsonb_each(b.\"body\") AS e",
                ENTRY_COLUMNS
            ),
            // What was done once (the move out of auxiliary.db).
            "CREATE TABLE IF NOT EXISTS \"_logs_meta\" (\"key\" TEXT PRIMARY KEY NOT NULL, \"value\" TEXT NOT NULL)".into(),
        ],
        Dialect::Postgres => vec![
            "CREATE TABLE IF NOT EXISTS \"_logs\" (\"id\" TEXT PRIMARY KEY NOT NULL, \"created\" TEXT NOT NULL, \
             \"level\" BIGINT NOT NULL DEFAULT 0, \"message\" TEXT NOT NULL DEFAULT '', \"data\" JSONB, \
             \"seq\" BIGINT NOT NULL DEFAULT 0)"
                .into(),
            // One index beside the primary key: each costs every insert, and the default order,
            // stats and pruning all go by time.
            "CREATE INDEX IF NOT EXISTS \"idx_logs_created\" ON \"_logs\" (\"created\", \"seq\")".into(),
        ],
    };
    texts
        .into_iter()
        .map(|t| {
            let mut s = Sql::new(d);
            s.push(&t);
            s
        })
        .collect()
}

/// An entry's columns out of a batch element `e` (SQLite). A missing `message` is
/// `data.method + " " + data.url` ([`entry_jsonb`]).
const ENTRY_COLUMNS: &str = "e.value ->> '$.id' AS \"id\", e.value ->> '$.created' AS \"created\", \
     e.value ->> '$.level' AS \"level\", \
     COALESCE(e.value ->> '$.message', (e.value ->> '$.data.method') || ' ' || (e.value ->> '$.data.url')) AS \"message\", \
     e.value -> '$.data' AS \"data\"";

/// `seq` of the SQLite view: rowid × this + place in the batch.
const SEQ_STRIDE: i64 = 1 << 17;
const _: () = assert!(PENDING as i64 <= SEQ_STRIDE && BATCH <= PENDING);

async fn create(store: &dyn Store) -> basalt_store::Result<()> {
    let mut tx = store.begin().await?;
    for s in create_table(store.dialect()) {
        tx.execute(&s).await?;
    }
    tx.commit().await
}

async fn exists(store: &dyn Store) -> basalt_store::Result<bool> {
    let mut q = Sql::new(store.dialect());
    q.push(match store.dialect() {
        Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_logs_batches'",
        Dialect::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_logs'"
        }
    });
    Ok(store.query(&q).await?.scalar_int() > 0)
}

/// The store request logs live in: `logs.db` in `dir` on SQLite, the main database on PostgreSQL.
pub async fn open_store(
    main: &Arc<dyn Store>,
    dir: &std::path::Path,
) -> basalt_store::Result<Arc<dyn Store>> {
    match main.dialect() {
        Dialect::Postgres => Ok(main.clone()),
        Dialect::Sqlite => Ok(Arc::new(basalt_store::sqlite::SqliteStore::open_paged(
            &dir.join("logs.db"),
            basalt_store::Synchronous::Normal,
            // A batch is a large row: few large pages keep its WAL frames and checkpoint copies few.
            Some(65_536),
        )?)),
    }
}

/// The logs an earlier version kept in `auxiliary.db` (`_logs`, one row per entry), moved into the
/// batches in one transaction that also records the move, then the old file removed. Run again
/// after a crash, it finds the move recorded and only removes the file.
async fn move_legacy(store: &dyn Store, dir: &std::path::Path) -> basalt_store::Result<u64> {
    let old = dir.join("auxiliary.db");
    if store.dialect() != Dialect::Sqlite || !old.exists() {
        return Ok(0);
    }
    let key = "moved auxiliary.db";
    let mut q = Sql::new(Dialect::Sqlite);
    q.push("SELECT COUNT(*) FROM \"_logs_meta\" WHERE \"key\" = ")
        .bind(Value::Text(key.into()));
    let mut moved = 0u64;
    if store.query(&q).await?.scalar_int() == 0 {
        // Read-write: after a crash its WAL may need recovering.
        let legacy =
            basalt_store::sqlite::SqliteStore::open_with(&old, basalt_store::Synchronous::Normal)?;
        let mut q = Sql::new(Dialect::Sqlite);
        q.push("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_logs'");
        let has_table = legacy.query(&q).await?.scalar_int() > 0;
        let mut tx = store.begin().await?;
        let mut after: Option<(String, i64, String)> = None;
        let mut batch = Pending::default();
        let mut doc = Jsonb::default();
        let mut more = has_table;
        while more {
            // Keyset pages in the old order (created, seq; the id makes the key unique: imported
            // entries could share both), so memory stays one batch.
            let mut q = Sql::new(Dialect::Sqlite);
            q.push("SELECT \"id\", \"created\", \"level\", \"message\", \"data\", \"seq\" FROM \"_logs\"");
            if let Some((c, s, id)) = &after {
                q.push(" WHERE (\"created\", \"seq\", \"id\") > (")
                    .bind(Value::Text(c.clone()))
                    .push(", ")
                    .bind(Value::Int(*s))
                    .push(", ")
                    .bind(Value::Text(id.clone()))
                    .push(")");
            }
            q.push(" ORDER BY \"created\", \"seq\", \"id\" LIMIT ")
                .bind(Value::Int(BATCH as i64));
            let rows = legacy.query(&q).await?.rows;
            more = rows.len() == BATCH;
            for r in rows {
                let mut it = r.into_iter();
                let mut next = || it.next().unwrap_or(Value::Null);
                let (id, created, level, message, data) = (
                    next().into_string(),
                    next().into_string(),
                    next().as_i64(),
                    next().into_string(),
                    next().into_string(),
                );
                after = Some((created.clone(), next().as_i64(), id.clone()));
                add_imported(
                    Dialect::Sqlite,
                    &mut batch,
                    &mut doc,
                    id,
                    created,
                    level,
                    message,
                    &data,
                );
                moved += 1;
            }
            write_pending(tx.as_mut(), Dialect::Sqlite, &mut batch).await?;
        }
        let mut q = Sql::new(Dialect::Sqlite);
        q.push("INSERT INTO \"_logs_meta\" (\"key\", \"value\") VALUES (")
            .bind(Value::Text(key.into()))
            .push(", ")
            .bind(Value::Text(basalt_core::time::format(chrono::Utc::now())))
            .push(")");
        tx.execute(&q).await?;
        tx.commit().await?;
        drop(legacy);
    }
    for suffix in ["", "-wal", "-shm"] {
        let f = dir.join(format!("auxiliary.db{suffix}"));
        if f.exists() {
            std::fs::remove_file(&f)
                .map_err(|e| basalt_store::StoreError::Db(format!("{}: {e}", f.display())))?;
        }
    }
    Ok(moved)
}

fn worth_logging(e: &RequestEntry) -> bool {
    if e.preflight {
        return false;
    }
    let path = e.url.split('?').next().unwrap_or("");
    if e.method == "GET" && path == "/api/realtime" {
        return false;
    }
    !(e.status < 400 && (path == "/api/logs" || path.starts_with("/api/logs/")))
}

/// A malformed filter or sort: 400 with the protocol's generic message; the detail goes to the log.
fn bad_query(what: &str, detail: &str) -> crate::ServiceError {
    tracing::debug!(what, detail, "rejected logs query");
    crate::error::bad("Something went wrong while processing your request.")
}

/// A 15-character `[a-z0-9]` id (the protocol's shape) that sorts by time: 10 base-36 digits of
/// the microsecond (good until the year 3110), then 5 random characters. Inserts then append to the
/// primary key's index instead of landing on random pages (which cost a read and a write each).
fn ordered_id(micros: i64) -> [u8; 15] {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = micros.max(0) as u64;
    let mut id = [b'0'; 15];
    for c in id[..10].iter_mut().rev() {
        *c = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    // Five base-36 digits of one random number (36^5 < 2^64).
    let mut r: u64 = rand::random();
    for c in id[10..].iter_mut() {
        *c = DIGITS[(r % 36) as usize];
        r /= 36;
    }
    id
}

/// An address as text: IPv4 written digit by digit into `buf` (`Display` goes through the
/// formatter, and this runs twice for every logged request), IPv6 by `Display`.
fn ip_text(ip: std::net::IpAddr, buf: &mut [u8; 15]) -> std::borrow::Cow<'_, str> {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            std::borrow::Cow::Borrowed(std::str::from_utf8(&buf[..n]).unwrap_or_default())
        }
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// `s` as a JSON string (serde_json's escaping, skipped when nothing needs it: most URLs and agents).
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

/// The URL a request log keeps: a `token` parameter (file and backup download tokens) is `*`, and
/// with `filter_literals` (pii fields exist) the `filter` parameter keeps its shape but not its
/// literals (`'…'` → `'*'`, digits → `0`): `email = 'a@b.io'` must not land in `_logs`.
pub fn redact_url(url: &str, filter_literals: bool) -> String {
    let Some((path, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some(("token", v)) if !v.is_empty() => "token=*".to_string(),
            Some(("filter", v)) if filter_literals => {
                let decoded = decode(&v.replace('+', " "));
                let mut out = String::with_capacity(decoded.len());
                let mut quote: Option<char> = None;
                for c in decoded.chars() {
                    match quote {
                        Some(q) if c == q => {
                            out.push('*');
                            out.push(c);
                            quote = None;
                        }
                        Some(_) => {}
                        None if c == '\'' || c == '"' => {
                            out.push(c);
                            quote = Some(c);
                        }
                        None if c.is_ascii_digit() => {
                            if !out.ends_with('0') {
                                out.push('0');
                            }
                        }
                        None => out.push(c),
                    }
                }
                if out == decoded {
                    // Nothing to hide: the URL stays as the client wrote it.
                    return kv.to_string();
                }
                let enc =
                    percent_encoding::utf8_percent_encode(&out, percent_encoding::NON_ALPHANUMERIC);
                format!("filter={enc}")
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

/// Percent-decodes a URL for the entry's message (invalid sequences kept as they are).
fn decode(url: &str) -> String {
    percent_encoding::percent_decode_str(url)
        .decode_utf8_lossy()
        .into_owned()
}

impl RequestLogs {
    /// Creates the store's tables when missing, moves logs left in `dir`'s `auxiliary.db` by an
    /// earlier version (SQLite), and starts the writer.
    pub async fn start(
        store: Arc<dyn Store>,
        dir: &std::path::Path,
    ) -> basalt_store::Result<Arc<RequestLogs>> {
        if let Err(e) = create(store.as_ref()).await {
            // Two nodes creating it at once (PostgreSQL's catalog race): fine if it exists now.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if !exists(store.as_ref()).await? {
                return Err(e);
            }
        }
        let moved = move_legacy(store.as_ref(), dir).await?;
        if moved > 0 {
            tracing::info!(
                entries = moved,
                "request logs moved from auxiliary.db into logs.db"
            );
        }
        let logs = Arc::new(RequestLogs {
            store,
            coll: Arc::new(schema()),
            queue: Arc::default(),
            dropped: AtomicU64::new(0),
            written: Arc::new(AtomicU64::new(0)),
        });
        tokio::spawn(write_loop(
            logs.store.clone(),
            logs.queue.clone(),
            logs.written.clone(),
        ));
        Ok(logs)
    }

    /// Queues a finished request under the `logs` settings; never waits.
    pub fn push(&self, s: &crate::config::LogsSettings, mut e: RequestEntry) {
        if s.max_days <= 0 || !worth_logging(&e) {
            return;
        }
        let failed = e.status >= 400;
        let level = if failed { LEVEL_ERROR } else { LEVEL_INFO };
        if level < s.min_level {
            return;
        }
        // A request's URL or header may carry NUL, which no backend keeps as text (PostgreSQL
        // refuses it, SQLite's functions stop at it): kept visible as U+FFFD. Checked first:
        // replace() always copies.
        for f in [&mut e.url, &mut e.referer, &mut e.user_agent] {
            if f.contains('\0') {
                *f = f.replace('\0', "\u{FFFD}");
            }
        }
        let decoded = if e.url.contains('%') {
            Some(decode(&e.url).replace('\0', "\u{FFFD}"))
        } else {
            None
        };
        let message = [e.method.as_ref(), " ", decoded.as_deref().unwrap_or(&e.url)];
        let url = if e.url.len() > MAX_URL {
            let mut cut = MAX_URL;
            while !e.url.is_char_boundary(cut) {
                cut -= 1;
            }
            std::borrow::Cow::Owned(format!("{}...", &e.url[..cut]))
        } else {
            std::borrow::Cow::Borrowed(e.url.as_str())
        };
        let (error, details) = match (failed, e.error) {
            (true, Some(x)) => (Some(x.message), Some(x.details)),
            (true, None) => (Some(String::new()), Some(Json::Null)),
            (false, _) => (None, None),
        };
        let (mut rbuf, mut ubuf) = ([0u8; 15], [0u8; 15]);
        let remote = e
            .remote_ip
            .filter(|_| s.log_ip)
            .map(|ip| ip_text(ip, &mut rbuf));
        let user = e
            .user_ip
            .filter(|_| s.log_ip)
            .map(|ip| ip_text(ip, &mut ubuf));
        let data = Data {
            kind: "request",
            method: &e.method,
            url: &url,
            status: e.status,
            exec_time: e.exec_ms,
            auth: &e.auth,
            auth_id: (s.log_auth_id && !e.auth.is_empty()).then_some(e.auth_id.as_str()),
            remote_ip: remote.as_deref(),
            user_ip: user.as_deref(),
            referer: &e.referer,
            user_agent: &e.user_agent,
            error: error.as_deref(),
            details: details.as_ref(),
        };
        let (micros, fixed) = basalt_core::time::now_fixed();
        let id = ordered_id(micros);
        let id = std::str::from_utf8(&id).unwrap_or_default();
        let formatted;
        let created = match &fixed {
            Some(b) => std::str::from_utf8(b).unwrap_or_default(),
            None => {
                formatted = chrono::DateTime::from_timestamp_micros(micros)
                    .map(basalt_core::time::format)
                    .unwrap_or_default();
                &formatted
            }
        };
        let added = match self.store.dialect() {
            Dialect::Sqlite => SCRATCH.with(|scratch| {
                let mut j = scratch.borrow_mut();
                j.buf.clear();
                // The message is the method and data.url unless decoding or the cut changed it.
                let derived = decoded.is_none() && matches!(url, std::borrow::Cow::Borrowed(_));
                entry_jsonb(
                    &mut j,
                    id,
                    created,
                    level,
                    (!derived).then_some(&message[..]),
                    |j| {
                        let m = j.open(jsonb::OBJECT);
                        data.write(j);
                        j.close(m);
                    },
                );
                self.enqueue(|p| p.add_doc(id, created, &j.buf))
            }),
            Dialect::Postgres => {
                let row = Row {
                    id: id.to_string(),
                    created: created.to_string(),
                    seq: micros,
                    level,
                    message: message.concat(),
                    data: data.to_json(),
                };
                self.enqueue(|p| p.add_row(row))
            }
        };
        if !added {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds an entry to the pending batch unless it is full; wakes the writer for a batch's first.
    fn enqueue(&self, add: impl FnOnce(&mut Pending)) -> bool {
        let Ok(mut p) = self.queue.pending.lock() else {
            return false;
        };
        if p.entries >= PENDING {
            return false;
        }
        let first = p.entries == 0;
        add(&mut p);
        drop(p);
        if first {
            self.queue.wake.notify_one();
        }
        true
    }

    fn select(&self) -> Sql {
        let mut q = Sql::new(self.store.dialect());
        q.push("SELECT \"id\", \"created\", \"level\", \"message\", \"data\" FROM \"_logs\" AS ")
            .push(MAIN);
        q
    }

    /// Compiles a client filter on `_logs` (400 with the protocol's message when malformed).
    fn filter(&self, f: &str) -> ServiceResult<Option<Sql>> {
        if f.trim().is_empty() {
            return Ok(None);
        }
        let e = filter::parse(f).map_err(|e| bad_query("filter", &e.to_string()))?;
        let info = RequestInfo::default();
        let mut c = Compiler::new(self.store.dialect(), &NoCollections, &info, false);
        let sql = c
            .compile(&self.coll, &e)
            .map_err(|e| bad_query("filter", &e.to_string()))?;
        Ok(Some(sql))
    }

    /// `GET /api/logs`: a page of entries (default order: oldest first, as stored).
    pub async fn list(
        &self,
        page: i64,
        per_page: i64,
        filter: &str,
        sort: &str,
        skip_total: bool,
    ) -> ServiceResult<Json> {
        let cond = self.filter(filter)?;
        let items: Vec<SortItem> =
            filter::parse_sort(sort).map_err(|e| bad_query("sort", &e.to_string()))?;
        let info = RequestInfo::default();
        let mut c = Compiler::new(self.store.dialect(), &NoCollections, &info, false);
        let order = c
            .order_by(&self.coll, &items)
            .map_err(|e| bad_query("sort", &e.to_string()))?;
        let mut where_ = Sql::new(self.store.dialect());
        if let Some(c) = cond {
            where_.push(" WHERE (");
            where_.append(c);
            where_.push(")");
        }
        // SQLite: the page's `seq`s first, then their entries. SQLite computes a row's every
        // column before sorting it, and rendering `data` for every entry of the log cost most of a
        // list's time.
        let sqlite = self.store.dialect() == Dialect::Sqlite;
        let mut q = if sqlite {
            let mut q = Sql::new(Dialect::Sqlite);
            q.push("SELECT ")
                .push(MAIN)
                .push(".\"seq\" FROM \"_logs\" AS ")
                .push(MAIN);
            q
        } else {
            self.select()
        };
        q.append(where_.clone());
        q.push(" ORDER BY ");
        if !order.text.is_empty() {
            q.append(order);
            q.push(", ");
        }
        q.push(MAIN)
            .push(".\"created\", ")
            .push(MAIN)
            .push(".\"seq\"");
        q.push(" LIMIT ")
            .bind(Value::Int(per_page))
            .push(" OFFSET ")
            .bind(Value::Int((page - 1).max(0).saturating_mul(per_page)));
        let mut rows = self.store.query(&q).await?.rows;
        if sqlite {
            rows = self.entries_at(rows).await?;
        }
        let (total, pages) = if skip_total {
            (-1, -1)
        } else {
            let mut cq = Sql::new(self.store.dialect());
            if sqlite && where_.text.is_empty() {
                // Every entry: the batches know their counts.
                cq.push("SELECT COALESCE(SUM(\"entries\"), 0) FROM \"_logs_batches\"");
            } else {
                cq.push("SELECT COUNT(*) FROM \"_logs\" AS ").push(MAIN);
                cq.append(where_);
            }
            let n = self.store.query(&cq).await?.scalar_int();
            (n, (n + per_page - 1) / per_page)
        };
        let items: Vec<Json> = rows.into_iter().map(to_json).collect();
        Ok(json!({
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": pages,
            "items": items,
        }))
    }

    /// SQLite: the entries at `seqs` (rows of one `seq` each), in that order: only their batches
    /// are unpacked.
    async fn entries_at(&self, seqs: Vec<Vec<Value>>) -> ServiceResult<Vec<Vec<Value>>> {
        let seqs: Vec<i64> = seqs
            .into_iter()
            .filter_map(|r| r.into_iter().next().map(|v| v.as_i64()))
            .collect();
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut batches: Vec<i64> = seqs.iter().map(|s| s / SEQ_STRIDE).collect();
        batches.sort_unstable();
        batches.dedup();
        let list = |q: &mut Sql, values: &[i64]| {
            for (i, v) in values.iter().enumerate() {
                q.push(if i == 0 { "" } else { ", " }).bind(Value::Int(*v));
            }
        };
        let mut q = Sql::new(Dialect::Sqlite);
        q.push("SELECT ")
            .push(ENTRY_COLUMNS)
            .push(&format!(
                ", b.rowid * {SEQ_STRIDE} + e.key FROM \"_logs_batches\" AS b, jsonb_each(b.\"body\") AS e WHERE b.rowid IN ("
            ));
        list(&mut q, &batches);
        q.push(&format!(") AND b.rowid * {SEQ_STRIDE} + e.key IN ("));
        list(&mut q, &seqs);
        q.push(")");
        let mut found: std::collections::HashMap<i64, Vec<Value>> = self
            .store
            .query(&q)
            .await?
            .rows
            .into_iter()
            .filter_map(|mut r| {
                let seq = r.pop()?.as_i64();
                Some((seq, r))
            })
            .collect();
        Ok(seqs.iter().filter_map(|s| found.remove(s)).collect())
    }

    /// `GET /api/logs/{id}`.
    pub async fn view(&self, id: &str) -> ServiceResult<Json> {
        let q = match self.store.dialect() {
            Dialect::Postgres => {
                let mut q = self.select();
                q.push(" WHERE \"id\" = ").bind(Value::Text(id.into()));
                q
            }
            Dialect::Sqlite => {
                // Only the batches whose id range holds it are unpacked (ids written here grow
                // with time, so that is one batch).
                let mut q = Sql::new(Dialect::Sqlite);
                q.push("SELECT ")
                    .push(ENTRY_COLUMNS)
                    .push(" FROM \"_logs_batches\" AS b, jsonb_each(b.\"body\") AS e WHERE b.\"min_id\" <= ")
                    .bind(Value::Text(id.into()))
                    .push(" AND b.\"max_id\" >= ")
                    .bind(Value::Text(id.into()))
                    .push(" AND e.value ->> '$.id' = ")
                    .bind(Value::Text(id.into()))
                    .push(" LIMIT 1");
                q
            }
        };
        let rows = self.store.query(&q).await?;
        rows.rows
            .into_iter()
            .next()
            .map(to_json)
            .ok_or_else(not_found)
    }

    /// `GET /api/logs/stats`: entries per hour (hours with entries only), oldest first.
    pub async fn stats(&self, filter: &str) -> ServiceResult<Json> {
        // The protocol's message differs from the list's here.
        let cond = self
            .filter(filter)
            .map_err(|_| crate::error::bad("Invalid filter format."))?;
        let mut q = Sql::new(self.store.dialect());
        q.push(
            "SELECT COUNT(*), substr(\"created\", 1, 13) || ':00:00.000Z' AS \"date\" FROM \"_logs\" AS ",
        )
        .push(MAIN);
        if let Some(c) = cond {
            q.push(" WHERE (");
            q.append(c);
            q.push(")");
        }
        q.push(" GROUP BY \"date\" ORDER BY \"date\"");
        let rows = self.store.query(&q).await?;
        Ok(Json::Array(
            rows.rows
                .into_iter()
                .map(|r| {
                    let mut it = r.into_iter();
                    let total = it.next().map_or(0, |v| v.as_i64());
                    let date = it.next().map(Value::into_string).unwrap_or_default();
                    json!({"total": total, "date": date})
                })
                .collect(),
        ))
    }

    /// `DELETE /api/logs`: removes every entry.
    pub async fn truncate(&self) -> ServiceResult<()> {
        let mut q = Sql::new(self.store.dialect());
        q.push(match self.store.dialect() {
            Dialect::Sqlite => "DELETE FROM \"_logs_batches\"",
            Dialect::Postgres => "DELETE FROM \"_logs\"",
        });
        let mut tx = self.store.begin().await?;
        tx.execute(&q).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes entries older than `max_days` days (0: every entry, as PocketBase does).
    pub async fn prune(&self, max_days: i64) -> ServiceResult<u64> {
        let cutoff = chrono::Utc::now() - chrono::Duration::days(max_days.max(0));
        let cutoff = Value::Text(basalt_core::time::format(cutoff));
        let mut q = Sql::new(self.store.dialect());
        let n = match self.store.dialect() {
            Dialect::Postgres => {
                q.push("DELETE FROM \"_logs\" WHERE \"created\" < ")
                    .bind(cutoff);
                let mut tx = self.store.begin().await?;
                let n = tx.execute(&q).await?;
                tx.commit().await?;
                n
            }
            Dialect::Sqlite => {
                // Whole batches, once their newest entry is past the cutoff (a batch spans at
                // most LINGER): the count is of entries.
                let mut tx = self.store.begin().await?;
                let mut c = Sql::new(Dialect::Sqlite);
                c.push(
                    "SELECT COALESCE(SUM(\"entries\"), 0) FROM \"_logs_batches\" WHERE \"last\" < ",
                )
                .bind(cutoff.clone());
                let n = tx.query(&c).await?.scalar_int().max(0) as u64;
                q.push("DELETE FROM \"_logs_batches\" WHERE \"last\" < ")
                    .bind(cutoff);
                tx.execute(&q).await?;
                tx.commit().await?;
                n
            }
        };
        Ok(n)
    }
}

fn to_json(r: Vec<Value>) -> Json {
    let mut it = r.into_iter();
    let mut next = || it.next().unwrap_or(Value::Null);
    let id = next().into_string();
    let created = next().into_string();
    let level = next().as_i64();
    let message = next().into_string();
    let data = serde_json::from_str::<Json>(&next().into_string()).unwrap_or(Json::Null);
    json!({"id": id, "created": created, "level": level, "message": message, "data": data})
}

/// The logs schema refers to no other collection.
struct NoCollections;

impl basalt_core::filter::compile::Schema for NoCollections {
    fn collection(&self, _: &str) -> Option<Arc<Collection>> {
        None
    }
}

async fn write_loop(store: Arc<dyn Store>, queue: Arc<Queue>, written: Arc<AtomicU64>) {
    // Two batches in turn: the one requests fill and the one being written (their buffers kept).
    let mut batch = Pending::default();
    loop {
        queue.wake.notified().await;
        // Let the batch fill for a moment: one transaction per batch is what keeps logging cheap.
        tokio::time::sleep(LINGER).await;
        match queue.pending.lock() {
            Ok(mut p) => std::mem::swap(&mut *p, &mut batch),
            Err(_) => return,
        }
        let n = batch.entries;
        let done = async {
            let mut tx = store.begin().await?;
            write_pending(tx.as_mut(), store.dialect(), &mut batch).await?;
            tx.commit().await
        };
        match done.await {
            Ok(()) => {
                written.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = n, "writing request logs failed; dropped");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        clear(&mut batch);
    }
}

/// Empties a batch, keeping its buffers (up to a few megabytes: a burst's are given back).
fn clear(p: &mut Pending) {
    p.docs.buf.clear();
    p.docs.buf.shrink_to(4 << 20);
    p.rows.clear();
    p.rows.shrink_to(8192);
    p.entries = 0;
}

/// Adds an entry written elsewhere (`data` as JSON text) to `batch`, encoded for the store.
#[allow(clippy::too_many_arguments)]
fn add_imported(
    d: Dialect,
    batch: &mut Pending,
    doc: &mut Jsonb,
    id: String,
    created: String,
    level: i64,
    message: String,
    data: &str,
) {
    match d {
        Dialect::Sqlite => {
            let value = serde_json::from_str::<Json>(data).unwrap_or(Json::Null);
            doc.buf.clear();
            entry_jsonb(doc, &id, &created, level, Some(&[&message]), |j| {
                j.value(&value)
            });
            batch.add_doc(&id, &created, &doc.buf);
        }
        Dialect::Postgres => {
            let seq = batch.entries as i64;
            batch.add_row(Row {
                id,
                created,
                seq,
                level,
                message,
                data: data.to_string(),
            })
        }
    }
}

impl RequestLogs {
    /// Writes entries made elsewhere (`basalt import pocketbase`: PocketBase's `_logs`) as they are:
    /// `(id, created, level, message, data as JSON text)`, in the order given.
    pub async fn import(
        &self,
        entries: Vec<(String, String, i64, String, String)>,
    ) -> basalt_store::Result<u64> {
        let n = entries.len() as u64;
        let d = self.store.dialect();
        let mut tx = self.store.begin().await?;
        let (mut batch, mut doc) = (Pending::default(), Jsonb::default());
        for (id, created, level, message, data) in entries {
            add_imported(d, &mut batch, &mut doc, id, created, level, message, &data);
            if batch.entries >= BATCH {
                write_pending(tx.as_mut(), d, &mut batch).await?;
            }
        }
        write_pending(tx.as_mut(), d, &mut batch).await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// Writes a batch in `tx` and empties it: on SQLite one `_logs_batches` row, on PostgreSQL one
/// `_logs` row per entry (several per `INSERT`).
async fn write_pending(
    tx: &mut dyn basalt_store::Tx,
    d: Dialect,
    batch: &mut Pending,
) -> basalt_store::Result<()> {
    if batch.entries == 0 {
        return Ok(());
    }
    match d {
        Dialect::Sqlite => {
            batch.docs.close(0);
            let mut q = Sql::new(d);
            q.push(
                "INSERT INTO \"_logs_batches\" (\"first\", \"last\", \"min_id\", \"max_id\", \"entries\", \"body\") VALUES (",
            )
            .bind(Value::Text(batch.first.clone()))
            .push(", ")
            .bind(Value::Text(batch.last.clone()))
            .push(", ")
            .bind(Value::Text(batch.min_id.clone()))
            .push(", ")
            .bind(Value::Text(batch.max_id.clone()))
            .push(", ")
            .bind(Value::Int(batch.entries as i64))
            .push(", ")
            .bind(Value::Blob(std::mem::take(&mut batch.docs.buf)))
            .push(")");
            let done = tx.execute(&q).await;
            // The buffer back for the next batch: a batch is megabytes, and fresh memory costs
            // its page faults.
            if let Some(Value::Blob(b)) = q.params.pop() {
                batch.docs.buf = b;
            }
            done?;
        }
        Dialect::Postgres => {
            let mut rows = batch.rows.drain(..).peekable();
            while rows.peek().is_some() {
                // Several rows per INSERT (one statement's overhead for many rows), in chunks of
                // a few fixed sizes: each statement text is prepared once per connection.
                let left = rows.len();
                let n = [64, 16, 4, 1].into_iter().find(|n| *n <= left).unwrap_or(1);
                let mut q = Sql::new(d);
                q.push(
                    "INSERT INTO \"_logs\" (\"id\", \"created\", \"seq\", \"level\", \"message\", \"data\") VALUES ",
                );
                for (i, r) in rows.by_ref().take(n).enumerate() {
                    // PostgreSQL refuses NUL in text and `\u0000` in jsonb: an imported entry's
                    // are kept visible as U+FFFD instead of losing the batch.
                    let message = if r.message.contains('\0') {
                        r.message.replace('\0', "\u{FFFD}")
                    } else {
                        r.message
                    };
                    let data = if r.data.contains("\\u0000") {
                        r.data.replace("\\u0000", "\\ufffd")
                    } else {
                        r.data
                    };
                    q.push(if i == 0 { "(" } else { ", (" })
                        .bind(Value::Text(r.id))
                        .push(", ")
                        .bind(Value::Text(r.created))
                        .push(", ")
                        .bind(Value::Int(r.seq))
                        .push(", ")
                        .bind(Value::Int(r.level))
                        .push(", ")
                        .bind(Value::Text(message))
                        .push(", ")
                        .bind(Value::Json(data))
                        .push(")");
                }
                tx.execute(&q).await?;
            }
        }
    }
    clear(batch);
    Ok(())
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn filter_literals_are_redacted() {
        let u = super::redact_url(
            "/api/collections/p/records?page=2&filter=email%20%3D%20%27a%40b.io%27%20%26%26%20n%3D42&sort=-created",
            true,
        );
        let d = super::decode(&u);
        assert!(!d.contains("a@b.io") && !d.contains("42"), "{d}");
        assert!(
            d.contains("email = '*' && n=0") && d.contains("page=2") && d.contains("sort=-created"),
            "{d}"
        );
        // A filter without literals stays as the client encoded it.
        let plain = "/api/logs?page=1&filter=bad((";
        assert_eq!(super::redact_url(plain, true), plain);
    }

    #[test]
    fn download_tokens_are_never_logged() {
        let u = "/api/backups/b.zip?token=eyJhbGciOi.x.y&download=1";
        assert_eq!(
            super::redact_url(u, false),
            "/api/backups/b.zip?token=*&download=1"
        );
        let f = "/api/files/c/r/a.png?thumb=100x100&token=abc&filter=x%3D1";
        assert_eq!(
            super::redact_url(f, false),
            "/api/files/c/r/a.png?thumb=100x100&token=*&filter=x%3D1"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_data_is_the_json_pocketbase_writes() {
        let details = serde_json::json!({"title": {"code": "validation_required"}});
        let d = Data {
            kind: "request",
            method: "POST",
            url: "/api/x?q=\"a\\b\"&t=\u{1}é",
            status: 400,
            exec_time: 0.125,
            auth: "users",
            auth_id: Some("u1"),
            remote_ip: Some("10.0.0.1"),
            user_ip: None,
            referer: "",
            user_agent: "agent/1.0 (\"quoted\")",
            error: Some("Failed to create record."),
            details: Some(&details),
        };
        let v: Json = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "request", "method": "POST", "url": "/api/x?q=\"a\\b\"&t=\u{1}é",
                "status": 400, "execTime": 0.125, "auth": "users", "authId": "u1",
                "remoteIP": "10.0.0.1", "referer": "", "userAgent": "agent/1.0 (\"quoted\")",
                "error": "Failed to create record.", "details": details,
            })
        );
        let id = ordered_id(1_700_000_000_000_000);
        assert!(id
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        let (a, b) = (
            ordered_id(1_796_400_000_000_000),
            ordered_id(1_796_400_000_000_001),
        );
        assert!(a[..10] < b[..10], "ids sort by time: {a:?} {b:?}");
    }

    #[test]
    fn what_is_logged_follows_pocketbase() {
        let e = |method: &'static str, url: &str, status: u16| RequestEntry {
            method: method.into(),
            url: url.into(),
            status,
            ..Default::default()
        };
        assert!(worth_logging(&e("GET", "/api/health", 200)));
        assert!(worth_logging(&e("POST", "/api/realtime", 204)));
        assert!(!worth_logging(&e("GET", "/api/realtime", 200)));
        assert!(!worth_logging(&e("GET", "/api/logs?page=1", 200)));
        assert!(!worth_logging(&e("GET", "/api/logs/stats", 200)));
        assert!(worth_logging(&e("GET", "/api/logs?filter=bad((", 400)));
        assert!(worth_logging(&e("GET", "/api/logsx", 404)));
        let mut p = e("OPTIONS", "/api/health", 204);
        p.preflight = true;
        assert!(!worth_logging(&p));
        assert_eq!(decode("/api/x?q=a%20b&y=%E2%82%AC"), "/api/x?q=a b&y=€");
        let mut b = [0u8; 15];
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let addr: std::net::IpAddr =
                ip.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
            assert_eq!(ip_text(addr, &mut b), ip);
        }
    }

    #[test]
    fn field_errors_become_details() {
        let mut f = basalt_core::FieldErrors::new();
        f.insert(
            "password".into(),
            basalt_core::FieldError::new(basalt_core::codes::REQUIRED, "Cannot be blank."),
        );
        let e = basalt_core::Error::validation("Failed to create record.", f);
        let l = LoggedError::of(&e, "Failed to create record.");
        assert_eq!(l.details, json!({"password": "cannot be blank"}));
        let l = LoggedError::of(&basalt_core::Error::not_found(), "x");
        assert_eq!(l.details, Json::Null);
    }
}
