//! PocketBase's request logs (`GET /api/logs`, `/api/logs/stats`, `/api/logs/{id}`,
//! `DELETE /api/logs`), written off the request path. Behaviour checked against PocketBase 0.40
//! (`sdk-tests/logs.test.mjs` passes on both).
//!
//! - **Where:** a table `_logs` in a store of its own: on SQLite the file `auxiliary.db` beside
//!   `data.db` (as PocketBase keeps it; committed with `synchronous=NORMAL`: a log is not worth an
//!   fsync), on PostgreSQL the same database, so every node sees every node's logs.
//! - **How:** a transport hands each finished request to [`RequestLogs::push`], which only queues it
//!   (a bounded channel; when full the entry is dropped and counted). One writer task inserts queued
//!   entries in batches: it lets a batch fill for 100 ms (up to 8,192 entries), then writes it in one
//!   transaction with one prepared `INSERT`.
//! - **What:** every routed request except a successful call of the logs API itself, a CORS
//!   preflight and the realtime event stream. Level 0 on success, 8 on an error answer (with its
//!   message and details).
//! - **Settings** (`logs` of the settings document): `maxDays` (0 turns request logging off; older
//!   entries are pruned every hour and at every settings save), `minLevel` (entries below it are not
//!   stored), `logIP`, `logAuthId`; `maxDataSize` is kept and validated.
//! - **Reading:** the filter and sort language of records, compiled against the `_logs` schema
//!   (`id, created, level, message, data`; `data.*` are JSON paths). Default order: oldest first.
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
use basalt_store::Store;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;

use crate::error::{not_found, ServiceResult};

/// PocketBase's levels (slog): debug -4, info 0, warn 4, error 8.
pub const LEVEL_INFO: i64 = 0;
pub const LEVEL_ERROR: i64 = 8;

/// Entries queued for the writer at most; past it new ones are dropped (and counted).
const QUEUE: usize = 32_768;
/// Rows per writer transaction at most.
const BATCH: usize = 8192;
/// How long the writer lets a batch fill (PocketBase: 3 s or 200 entries).
const LINGER: Duration = Duration::from_millis(100);
/// Longest `data.url` kept (PocketBase's cut), then `...`.
const MAX_URL: usize = 3000;

/// One finished request as a transport saw it.
#[derive(Debug, Clone, Default)]
pub struct RequestEntry {
    pub method: String,
    /// Path and query, as requested (percent-encoded).
    pub url: String,
    pub status: u16,
    /// Milliseconds.
    pub exec_ms: f64,
    pub remote_ip: String,
    pub user_ip: String,
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

impl Data<'_> {
    /// The JSON text, written straight into one string (every request pays for it).
    fn to_json(&self) -> String {
        let mut o = String::with_capacity(
            160 + self.url.len() + self.user_agent.len() + self.referer.len(),
        );
        fn key(o: &mut String, k: &str) {
            o.push(if o.is_empty() { '{' } else { ',' });
            o.push('"');
            o.push_str(k);
            o.push_str("\":");
        }
        for (k, v) in [
            ("type", self.kind),
            ("method", self.method),
            ("url", self.url),
        ] {
            key(&mut o, k);
            push_json_str(&mut o, v);
        }
        use std::fmt::Write;
        key(&mut o, "status");
        let _ = write!(o, "{}", self.status);
        key(&mut o, "execTime");
        match serde_json::Number::from_f64(self.exec_time) {
            Some(n) => {
                let _ = write!(o, "{n}");
            }
            None => o.push('0'),
        }
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
                key(&mut o, k);
                push_json_str(&mut o, v);
            }
        }
        if let Some(d) = self.details {
            key(&mut o, "details");
            o.push_str(&d.to_string());
        }
        o.push('}');
        o
    }
}

struct Row {
    id: String,
    created: String,
    seq: i64,
    level: i64,
    message: String,
    data: String,
}

/// The logs store, its queue and its writer.
pub struct RequestLogs {
    store: Arc<dyn Store>,
    coll: Arc<Collection>,
    tx: mpsc::Sender<Row>,
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

/// `_logs`: the schema's columns plus `seq` (microseconds at queueing: the insertion order that
/// breaks ties between entries of the same millisecond; not filterable).
fn create_table(d: Dialect) -> Vec<Sql> {
    // SQLite: clustered on the id (time-ordered for entries written here, so inserts append), with
    // no rowid B-tree beside it: one B-tree less to write per entry.
    let (json, big, clustered) = match d {
        Dialect::Sqlite => ("TEXT", "INTEGER", " WITHOUT ROWID"),
        Dialect::Postgres => ("JSONB", "BIGINT", ""),
    };
    [
        format!(
            "CREATE TABLE IF NOT EXISTS \"_logs\" (\"id\" TEXT PRIMARY KEY NOT NULL, \"created\" TEXT NOT NULL, \
             \"level\" {big} NOT NULL DEFAULT 0, \"message\" TEXT NOT NULL DEFAULT '', \"data\" {json}, \
             \"seq\" {big} NOT NULL DEFAULT 0){clustered}"
        ),
        // One index beside the primary key: each costs every insert, and the default order, stats
        // and pruning all go by time.
        "CREATE INDEX IF NOT EXISTS \"idx_logs_created\" ON \"_logs\" (\"created\", \"seq\")".into(),
    ]
    .into_iter()
    .map(|t| {
        let mut s = Sql::new(d);
        s.push(&t);
        s
    })
    .collect()
}

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
        Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_logs'",
        Dialect::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_logs'"
        }
    });
    Ok(store.query(&q).await?.scalar_int() > 0)
}

/// The store request logs live in: `auxiliary.db` in `dir` on SQLite, the main database on
/// PostgreSQL.
pub async fn open_store(
    main: &Arc<dyn Store>,
    dir: &std::path::Path,
) -> basalt_store::Result<Arc<dyn Store>> {
    match main.dialect() {
        Dialect::Postgres => Ok(main.clone()),
        Dialect::Sqlite => Ok(Arc::new(basalt_store::sqlite::SqliteStore::open_with(
            &dir.join("auxiliary.db"),
            basalt_store::Synchronous::Normal,
        )?)),
    }
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
fn ordered_id(micros: i64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = micros.max(0) as u64;
    let mut head = [b'0'; 10];
    for c in head.iter_mut().rev() {
        *c = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    let mut id = String::with_capacity(15);
    id.extend(head.iter().map(|&b| b as char));
    // Five base-36 digits of one random number (36^5 < 2^64).
    let mut r: u64 = rand::random();
    for _ in 0..5 {
        id.push(DIGITS[(r % 36) as usize] as char);
        r /= 36;
    }
    id
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
    /// Creates the table when missing and starts the writer.
    pub async fn start(store: Arc<dyn Store>) -> basalt_store::Result<Arc<RequestLogs>> {
        if let Err(e) = create(store.as_ref()).await {
            // Two nodes creating it at once (PostgreSQL's catalog race): fine if it exists now.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if !exists(store.as_ref()).await? {
                return Err(e);
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let logs = Arc::new(RequestLogs {
            store,
            coll: Arc::new(schema()),
            tx,
            dropped: AtomicU64::new(0),
            written: Arc::new(AtomicU64::new(0)),
        });
        tokio::spawn(write_loop(logs.store.clone(), rx, logs.written.clone()));
        Ok(logs)
    }

    /// Queues a finished request under the `logs` settings; never waits.
    pub fn push(&self, s: &crate::config::LogsSettings, e: RequestEntry) {
        if s.max_days <= 0 || !worth_logging(&e) {
            return;
        }
        let failed = e.status >= 400;
        let level = if failed { LEVEL_ERROR } else { LEVEL_INFO };
        if level < s.min_level {
            return;
        }
        let mut message = String::with_capacity(e.method.len() + 1 + e.url.len());
        message.push_str(&e.method);
        message.push(' ');
        if e.url.contains('%') {
            message.push_str(&decode(&e.url));
        } else {
            message.push_str(&e.url);
        }
        let mut url = e.url;
        if url.len() > MAX_URL {
            let mut cut = MAX_URL;
            while !url.is_char_boundary(cut) {
                cut -= 1;
            }
            url.truncate(cut);
            url.push_str("...");
        }
        let (error, details) = match (failed, e.error) {
            (true, Some(x)) => (Some(x.message), Some(x.details)),
            (true, None) => (Some(String::new()), Some(Json::Null)),
            (false, _) => (None, None),
        };
        let data = Data {
            kind: "request",
            method: &e.method,
            url: &url,
            status: e.status,
            exec_time: e.exec_ms,
            auth: &e.auth,
            auth_id: (s.log_auth_id && !e.auth.is_empty()).then_some(e.auth_id.as_str()),
            remote_ip: s.log_ip.then_some(e.remote_ip.as_str()),
            user_ip: s.log_ip.then_some(e.user_ip.as_str()),
            referer: &e.referer,
            user_agent: &e.user_agent,
            error: error.as_deref(),
            details: details.as_ref(),
        };
        let now = chrono::Utc::now();
        let row = Row {
            id: ordered_id(now.timestamp_micros()),
            created: basalt_core::time::format(now),
            seq: now.timestamp_micros(),
            level,
            message,
            data: data.to_json(),
        };
        if self.tx.try_send(row).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
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
        let mut q = self.select();
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
        let rows = self.store.query(&q).await?;
        let (total, pages) = if skip_total {
            (-1, -1)
        } else {
            let mut cq = Sql::new(self.store.dialect());
            cq.push("SELECT COUNT(*) FROM \"_logs\" AS ").push(MAIN);
            cq.append(where_);
            let n = self.store.query(&cq).await?.scalar_int();
            (n, (n + per_page - 1) / per_page)
        };
        let items: Vec<Json> = rows.rows.into_iter().map(to_json).collect();
        Ok(json!({
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": pages,
            "items": items,
        }))
    }

    /// `GET /api/logs/{id}`.
    pub async fn view(&self, id: &str) -> ServiceResult<Json> {
        let mut q = self.select();
        q.push(" WHERE \"id\" = ").bind(Value::Text(id.into()));
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
        q.push("DELETE FROM \"_logs\"");
        let mut tx = self.store.begin().await?;
        tx.execute(&q).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes entries older than `max_days` days (0: every entry, as PocketBase does).
    pub async fn prune(&self, max_days: i64) -> ServiceResult<u64> {
        let cutoff = chrono::Utc::now() - chrono::Duration::days(max_days.max(0));
        let mut q = Sql::new(self.store.dialect());
        q.push("DELETE FROM \"_logs\" WHERE \"created\" < ")
            .bind(Value::Text(basalt_core::time::format(cutoff)));
        let mut tx = self.store.begin().await?;
        let n = tx.execute(&q).await?;
        tx.commit().await?;
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

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Row>, written: Arc<AtomicU64>) {
    let mut buf: Vec<Row> = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut buf, BATCH).await == 0 {
            return;
        }
        // Let a batch fill for a moment, without waking for each entry (senders only wake a
        // waiting receiver): one transaction per batch is what keeps logging cheap.
        if buf.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while buf.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => buf.push(r),
                    Err(_) => break,
                }
            }
        }
        let n = buf.len();
        match write_batch(store.as_ref(), &mut buf).await {
            Ok(()) => {
                written.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = n, "writing request logs failed; dropped");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        buf.clear();
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
        let mut rows: Vec<Row> = entries
            .into_iter()
            .enumerate()
            .map(|(i, (id, created, level, message, data))| Row {
                id,
                created,
                seq: i as i64,
                level,
                message,
                data,
            })
            .collect();
        write_batch(self.store.as_ref(), &mut rows).await?;
        Ok(n)
    }
}

async fn write_batch(store: &dyn Store, rows: &mut Vec<Row>) -> basalt_store::Result<()> {
    let d = store.dialect();
    let mut tx = store.begin().await?;
    let mut rows = rows.drain(..).peekable();
    while rows.peek().is_some() {
        // Several rows per INSERT (one statement's overhead for many rows), in chunks of a few
        // fixed sizes: each statement text is prepared once per connection.
        let left = rows.len();
        let n = [64, 16, 4, 1].into_iter().find(|n| *n <= left).unwrap_or(1);
        let mut q = Sql::new(d);
        q.push(
            "INSERT INTO \"_logs\" (\"id\", \"created\", \"seq\", \"level\", \"message\", \"data\") VALUES ",
        );
        for (i, r) in rows.by_ref().take(n).enumerate() {
            // A request's URL or header may carry NUL, which no backend stores as text (and
            // PostgreSQL's jsonb refuses as \u0000): kept visible as U+FFFD instead of losing the
            // batch. Checked first: the writer runs for every request, and replace() always copies.
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
    tx.commit().await
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
        assert!(
            id.len() == 15
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        assert!(ordered_id(1) < ordered_id(2), "ids sort by time");
    }

    #[test]
    fn what_is_logged_follows_pocketbase() {
        let e = |method: &str, url: &str, status: u16| RequestEntry {
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
        let (a, b) = (
            ordered_id(1_796_400_000_000_000),
            ordered_id(1_796_400_000_000_001),
        );
        assert!(
            a.len() == 15
                && a.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert!(a[..10] < b[..10], "{a} {b}");
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
