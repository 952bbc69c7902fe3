//! The outbox tables and their queries.
//!
//! `_events(seq, id, collection_id, collection, record_id, action, time, data)`: one row per change,
//! `seq` strictly increasing and never reused (SQLite `AUTOINCREMENT`, PostgreSQL `BIGSERIAL`).
//! `_event_cursors(sink, seq)`: the last sequence each durable sink acknowledged.

use basalt_core::sql::{Dialect, Sql, Value};
use basalt_store::{Rows, Store, StoreError, Tx};
use serde_json::{Map, Value as Json};

use crate::{Action, Event};

/// The advisory lock that orders PostgreSQL writers' appends against the high-water read.
pub const PG_LOCK_KEY: i64 = 0x6261_7361_6c74;

pub fn tables(d: Dialect) -> Vec<Sql> {
    let seq = match d {
        // A rowid alias, not AUTOINCREMENT (which writes sqlite_sequence on every insert): numbers are
        // never reused because pruning always keeps the newest row (see `prune`).
        Dialect::Sqlite => "INTEGER PRIMARY KEY",
        Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    let int = match d {
        Dialect::Sqlite => "INTEGER",
        Dialect::Postgres => "BIGINT",
    };
    let mut out = Vec::new();
    let mut s = Sql::new(d);
    s.push(&format!(
        "CREATE TABLE IF NOT EXISTS \"_events\" (\"seq\" {seq}, \"id\" TEXT NOT NULL, \
         \"collection_id\" TEXT NOT NULL, \"collection\" TEXT NOT NULL, \"record_id\" TEXT NOT NULL, \
         \"action\" TEXT NOT NULL, \"time\" TEXT NOT NULL, \"data\" TEXT NOT NULL)"
    ));
    out.push(s);
    let mut s = Sql::new(d);
    s.push(&format!(
        "CREATE TABLE IF NOT EXISTS \"_event_cursors\" (\"sink\" TEXT PRIMARY KEY, \"seq\" {int} NOT NULL, \
         \"updated\" TEXT NOT NULL)"
    ));
    out.push(s);
    out.extend(crate::webhook::tables(d));
    out
}

/// Columns added after a table first shipped: `(table, column, definition)`. Added when missing at
/// startup (`ADD COLUMN` with a default, so a node of the previous version, which never names them,
/// keeps working beside one of this version during a rolling upgrade).
pub fn added_columns(d: Dialect) -> Vec<(&'static str, &'static str, &'static str)> {
    let int = match d {
        Dialect::Sqlite => "INTEGER NOT NULL DEFAULT 0",
        Dialect::Postgres => "BIGINT NOT NULL DEFAULT 0",
    };
    vec![
        // Sink leases (many nodes): which node runs the sink, until when (unix ms).
        ("_event_cursors", "owner", "TEXT NOT NULL DEFAULT ''"),
        ("_event_cursors", "lease_until", int),
    ]
}

/// Adds `column` to `table` unless it exists (see [`added_columns`]).
pub async fn add_column(
    store: &dyn Store,
    table: &str,
    column: &str,
    def: &str,
) -> Result<(), StoreError> {
    let d = store.dialect();
    let mut q = Sql::new(d);
    match d {
        Dialect::Sqlite => {
            q.push("SELECT COUNT(*) FROM pragma_table_info(")
                .bind(Value::Text(table.into()))
                .push(") WHERE name = ")
                .bind(Value::Text(column.into()));
        }
        Dialect::Postgres => {
            q.push("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ")
                .bind(Value::Text(table.into()))
                .push(" AND column_name = ")
                .bind(Value::Text(column.into()));
        }
    }
    if store.query(&q).await?.scalar_int() > 0 {
        return Ok(());
    }
    let mut a = Sql::new(d);
    let if_not = if d == Dialect::Postgres {
        "IF NOT EXISTS "
    } else {
        ""
    };
    a.push(&format!(
        "ALTER TABLE \"{table}\" ADD COLUMN {if_not}\"{column}\" {def}"
    ));
    let mut tx = store.begin().await?;
    match tx.execute(&a).await {
        Ok(_) => tx.commit().await,
        // Another node added it between the check and the ALTER.
        Err(e) if e.to_string().contains("duplicate column") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Appends the event inside the writer's transaction. On PostgreSQL the insert first takes the shared
/// advisory lock (held to commit), so [`high_water`] never passes a sequence number still in flight.
pub async fn append(tx: &mut Box<dyn Tx>, d: Dialect, ev: &Event) -> Result<i64, StoreError> {
    let mut s = Sql::new(d);
    s.push("INSERT INTO \"_events\" (\"id\", \"collection_id\", \"collection\", \"record_id\", \"action\", \"time\", \"data\") ");
    s.push(if d == Dialect::Postgres {
        "SELECT "
    } else {
        "VALUES ("
    });
    s.bind(Value::Text(ev.id.clone())).push(", ");
    s.bind(Value::Text(ev.collection_id.clone())).push(", ");
    s.bind(Value::Text(ev.collection.clone())).push(", ");
    s.bind(Value::Text(ev.record_id.clone())).push(", ");
    s.bind(Value::Text(ev.action.as_str().into())).push(", ");
    s.bind(Value::Text(ev.time.clone())).push(", ");
    #[derive(serde::Serialize)]
    struct Stored<'a> {
        record: &'a Option<Map<String, Json>>,
        before: &'a Option<Map<String, Json>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        traceparent: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sealed: &'a Option<String>,
    }
    let data = serde_json::to_string(&Stored {
        record: &ev.record,
        before: &ev.before,
        traceparent: &ev.traceparent,
        sealed: &ev.sealed,
    })
    .unwrap_or_default();
    s.bind(Value::Text(data));
    if d == Dialect::Postgres {
        s.push(&format!(
            " FROM (SELECT pg_advisory_xact_lock_shared({PG_LOCK_KEY})) AS \"l\" RETURNING \"seq\""
        ));
    } else {
        s.push(")");
    }
    tx.insert_rowid(&s).await
}

/// The highest sequence number below which every event is committed and visible.
pub async fn high_water(store: &dyn Store) -> Result<i64, StoreError> {
    let d = store.dialect();
    let mut q = Sql::new(d);
    q.push("SELECT COALESCE(MAX(\"seq\"), 0) FROM \"_events\"");
    match d {
        // One writer: whatever a reader sees is a committed prefix.
        Dialect::Sqlite => Ok(store.query(&q).await?.scalar_int()),
        Dialect::Postgres => {
            // The exclusive lock waits for every writer that appended (shared lock) to commit; new
            // writers queue behind it. Read committed: the SELECT after the lock sees them all.
            let mut tx = store.begin().await?;
            let mut l = Sql::new(d);
            l.push(&format!("SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"));
            tx.query(&l).await?;
            let hwm = tx.query(&q).await?.scalar_int();
            tx.commit().await?;
            Ok(hwm)
        }
    }
}

/// Events with `after < seq <= upto`, in sequence order, at most `limit`.
pub async fn read(
    store: &dyn Store,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let mut q = Sql::new(store.dialect());
    q.push("SELECT \"seq\", \"id\", \"collection_id\", \"collection\", \"record_id\", \"action\", \"time\", \"data\" FROM \"_events\" WHERE \"seq\" > ")
        .bind(Value::Int(after))
        .push(" AND \"seq\" <= ")
        .bind(Value::Int(upto))
        .push(" ORDER BY \"seq\" LIMIT ")
        .bind(Value::Int(limit));
    Ok(rows_to_events(store.query(&q).await?))
}

fn rows_to_events(rows: Rows) -> Vec<Event> {
    rows.rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            let seq = it.next()?.as_i64();
            let mut s = || it.next().map(Value::into_string).unwrap_or_default();
            let (id, cid, coll, rid, action, time, data) = (s(), s(), s(), s(), s(), s(), s());
            let mut data: Map<String, Json> = serde_json::from_str(&data).unwrap_or_default();
            let obj = |v: Option<Json>| match v {
                Some(Json::Object(m)) => Some(m),
                _ => None,
            };
            Some(Event {
                seq,
                id,
                action: Action::parse(&action)?,
                collection_id: cid,
                collection: coll,
                record_id: rid,
                time,
                record: obj(data.remove("record")),
                before: obj(data.remove("before")),
                traceparent: data
                    .remove("traceparent")
                    .and_then(|t| t.as_str().map(str::to_string)),
                sealed: data
                    .remove("sealed")
                    .and_then(|t| t.as_str().map(str::to_string)),
            })
        })
        .collect()
}

/// A sink's cursor, created at `start` when the sink is new (a new sink starts at the present).
pub async fn ensure_cursor(store: &dyn Store, sink: &str, start: i64) -> Result<i64, StoreError> {
    let d = store.dialect();
    let mut q = Sql::new(d);
    q.push("SELECT \"seq\" FROM \"_event_cursors\" WHERE \"sink\" = ")
        .bind(Value::Text(sink.into()));
    if let Some(v) = store.query(&q).await?.scalar() {
        return Ok(v.as_i64());
    }
    let mut tx = store.begin().await?;
    let mut s = Sql::new(d);
    s.push("INSERT INTO \"_event_cursors\" (\"sink\", \"seq\", \"updated\") VALUES (")
        .bind(Value::Text(sink.into()))
        .push(", ")
        .bind(Value::Int(start))
        .push(", ")
        .bind(Value::Text(basalt_core::time::now()))
        .push(") ON CONFLICT (\"sink\") DO NOTHING");
    tx.execute(&s).await?;
    tx.commit().await?;
    Ok(store
        .query(&q)
        .await?
        .scalar()
        .map_or(start, |v| v.as_i64()))
}

/// Saves a sink's cursor, fenced by the lease: only the node that holds it (`owner`) moves the
/// cursor. `Ok(false)`: the lease is someone else's now (this node must stop delivering).
pub async fn save_cursor(
    store: &dyn Store,
    sink: &str,
    owner: &str,
    seq: i64,
) -> Result<bool, StoreError> {
    let mut s = Sql::new(store.dialect());
    s.push("UPDATE \"_event_cursors\" SET \"seq\" = ")
        .bind(Value::Int(seq))
        .push(", \"updated\" = ")
        .bind(Value::Text(basalt_core::time::now()))
        .push(" WHERE \"sink\" = ")
        .bind(Value::Text(sink.into()))
        .push(" AND \"owner\" = ")
        .bind(Value::Text(owner.into()));
    let mut tx = store.begin().await?;
    let n = tx.execute(&s).await?;
    tx.commit().await?;
    Ok(n > 0)
}

/// Takes or renews the lease on a sink for `owner` until `until` (unix ms): granted when the sink
/// is unowned, already `owner`'s, or its lease ran out. Returns the durable cursor when granted.
pub async fn lease(
    store: &dyn Store,
    sink: &str,
    owner: &str,
    now: i64,
    until: i64,
) -> Result<Option<i64>, StoreError> {
    let mut s = Sql::new(store.dialect());
    s.push("UPDATE \"_event_cursors\" SET \"owner\" = ")
        .bind(Value::Text(owner.into()))
        .push(", \"lease_until\" = ")
        .bind(Value::Int(until))
        .push(" WHERE \"sink\" = ")
        .bind(Value::Text(sink.into()))
        .push(" AND (\"owner\" = ")
        .bind(Value::Text(owner.into()))
        .push(" OR \"owner\" = '' OR \"lease_until\" < ")
        .bind(Value::Int(now))
        .push(") RETURNING \"seq\"");
    let mut tx = store.begin().await?;
    let v = tx.query(&s).await?.scalar();
    tx.commit().await?;
    Ok(v.map(|v| v.as_i64()))
}

/// Gives up every lease `owner` holds (graceful shutdown: another node takes over at once).
pub async fn release(store: &dyn Store, owner: &str) -> Result<(), StoreError> {
    let mut s = Sql::new(store.dialect());
    s.push("UPDATE \"_event_cursors\" SET \"owner\" = '', \"lease_until\" = 0 WHERE \"owner\" = ")
        .bind(Value::Text(owner.into()));
    let mut tx = store.begin().await?;
    tx.execute(&s).await?;
    tx.commit().await
}

/// The lowest durable cursor among `sinks` (`None` when there is none).
pub async fn min_cursor(store: &dyn Store, sinks: &[String]) -> Result<Option<i64>, StoreError> {
    if sinks.is_empty() {
        return Ok(None);
    }
    let mut q = Sql::new(store.dialect());
    q.push("SELECT MIN(\"seq\") FROM \"_event_cursors\" WHERE \"sink\" IN (");
    for (i, n) in sinks.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.bind(Value::Text(n.clone()));
    }
    q.push(")");
    Ok(store.query(&q).await?.scalar().and_then(|v| match v {
        Value::Null => None,
        v => Some(v.as_i64()),
    }))
}

/// Deletes events every consumer has acknowledged (`seq <= upto`), always keeping the newest row so
/// that SQLite never hands out a sequence number again.
pub async fn prune(store: &dyn Store, upto: i64) -> Result<u64, StoreError> {
    let mut s = Sql::new(store.dialect());
    s.push("DELETE FROM \"_events\" WHERE \"seq\" <= ")
        .bind(Value::Int(upto))
        .push(" AND \"seq\" < (SELECT MAX(\"seq\") FROM \"_events\")");
    let mut tx = store.begin().await?;
    let n = tx.execute(&s).await?;
    tx.commit().await?;
    Ok(n)
}

/// Events still in the outbox (the newest one is always kept).
pub async fn count(store: &dyn Store) -> Result<i64, StoreError> {
    let mut q = Sql::new(store.dialect());
    q.push("SELECT COUNT(*) FROM \"_events\"");
    Ok(store.query(&q).await?.scalar_int())
}
