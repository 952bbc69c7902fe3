//! `basalt import pocketbase <pb_data>`: a PocketBase 0.23+ data directory into this application's
//! store (SQLite or PostgreSQL). PocketBase's `data.db` is read read-only; what moves over:
//!
//! - the collections with their ids, field ids, rules, indexes and options — the auth collections'
//!   token secrets included, so tokens PocketBase issued stay valid until they expire — and the view
//!   collections (their query run in this database's dialect);
//! - every record of every collection (system ones too: `_superusers`, `_externalAuths`, `_mfas`,
//!   `_otps`, `_authOrigins`) with its id, `created`/`updated`, `tokenKey` and bcrypt password hash
//!   (accepted at sign-in, upgraded to argon2id then), in one transaction;
//! - the settings (`_params` `settings`, when not encrypted with `PB_ENCRYPTION_KEY`);
//! - the request logs of `auxiliary.db`;
//! - the files of `storage/` (thumbnails included), into local storage.
//!
//! The collections and the records go in one transaction, so a failure leaves the target as it was.
//! The caller checks that the target is empty (or forced) and reports [`Report`].

use std::path::Path;

use basalt_core::record::Data;
use basalt_core::schema::{CollectionType, FieldType};
use basalt_core::sql::{Sql, Value};
use basalt_store::sqlite::ReadOnly;
use serde_json::{json, Map, Value as Json};

use crate::error::{bad, ServiceError, ServiceResult};
use crate::AppCtx;

/// What an import moved, per collection: records in PocketBase and in the target afterwards.
#[derive(Debug, Default)]
pub struct Report {
    pub collections: Vec<(String, i64, i64)>,
    pub files: (u64, u64),
    /// The same per collection (the folders of `storage/`).
    pub files_by: Vec<(String, u64, u64)>,
    /// Request log entries in PocketBase's `auxiliary.db`, and written.
    pub logs: (u64, u64),
    pub settings: bool,
}

/// Rows read from PocketBase's files at a time.
const PAGE: i64 = 1000;

fn io_err(e: impl std::fmt::Display) -> ServiceError {
    ServiceError(basalt_core::Error::internal(e.to_string()))
}

fn text(v: &Value) -> String {
    v.clone().into_string()
}

fn parse(v: &Value) -> Json {
    serde_json::from_str(&text(v)).unwrap_or(Json::Null)
}

/// The collections of PocketBase's `_collections`, in the shape the import API takes.
fn collections(db: &ReadOnly) -> ServiceResult<Vec<Json>> {
    let mut q = Sql::new(basalt_core::sql::Dialect::Sqlite);
    q.push("SELECT * FROM _collections ORDER BY created, name");
    let rows = db.query(&q)?;
    let col = |name: &str| rows.col(name);
    let mut out = vec![];
    for r in &rows.rows {
        let get = |k: &str| col(k).map(|i| &r[i]);
        let mut o = Map::new();
        if let Some(Json::Object(opts)) = get("options").map(parse) {
            o.extend(opts);
        }
        for k in ["id", "name", "type", "created", "updated"] {
            o.insert(k.into(), json!(get(k).map(text).unwrap_or_default()));
        }
        o.insert(
            "system".into(),
            json!(matches!(
                get("system"),
                Some(Value::Int(1)) | Some(Value::Bool(true))
            )),
        );
        o.insert(
            "fields".into(),
            get("fields").map(parse).unwrap_or(json!([])),
        );
        o.insert(
            "indexes".into(),
            get("indexes").map(parse).unwrap_or(json!([])),
        );
        for k in [
            "listRule",
            "viewRule",
            "createRule",
            "updateRule",
            "deleteRule",
        ] {
            o.insert(
                k.into(),
                match get(k) {
                    None | Some(Value::Null) => Json::Null,
                    Some(v) => json!(text(v)),
                },
            );
        }
        out.push(Json::Object(o));
    }
    Ok(out)
}

/// A PocketBase column value as the record's JSON for field type `ty`.
fn value_of(ty: FieldType, multiple: bool, v: &Value) -> Json {
    match (ty, v) {
        (_, Value::Null) => Json::Null,
        (FieldType::Bool, Value::Int(i)) => json!(*i != 0),
        (FieldType::Bool, other) => json!(matches!(text(other).as_str(), "1" | "true")),
        (FieldType::Number, Value::Int(i)) => json!(i),
        (FieldType::Number, Value::Real(f)) => json!(f),
        (FieldType::Number, other) => text(other).parse::<f64>().map_or(json!(0), |f| json!(f)),
        (FieldType::Json | FieldType::GeoPoint, other) => parse(other),
        (FieldType::Select | FieldType::Relation | FieldType::File, other) if multiple => {
            match parse(other) {
                Json::Array(a) => Json::Array(a),
                _ => json!([]),
            }
        }
        (_, other) => json!(text(other)),
    }
}

/// A step of the import: `done` of `total` items of `what` (a collection's records, its files, the
/// request logs). Sent after each page of rows and when a step ends (`done == total`).
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub what: &'a str,
    pub done: u64,
    pub total: u64,
}

/// Imports `pb_data` into `ctx`'s store (see the module's description).
pub async fn import(
    ctx: &AppCtx,
    pb_data: &Path,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> ServiceResult<Report> {
    let step = |what: &str, done: u64, total: u64| progress(Progress { what, done, total });
    let db_path = pb_data.join("data.db");
    if !db_path.is_file() {
        return Err(bad(&format!(
            "{} is not a PocketBase data directory (no data.db)",
            pb_data.display()
        )));
    }
    let db = ReadOnly::open(&db_path)?;
    let mut report = Report::default();
    let list = collections(&db)?;
    step("collections", list.len() as u64, list.len() as u64);
    // The collections and every record in one transaction: a failure leaves the target as it was.
    let mut tx = ctx.store.begin().await?;
    let (staged, _) = crate::collections::import_in(ctx, &mut tx, &list, false)
        .await
        .map_err(|e| match e.0 {
            basalt_core::Error::Validation { fields, .. } => {
                let detail = fields
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                bad(&format!("Failed to import the collections: {detail}"))
            }
            other => ServiceError(other),
        })?;
    let mut counts = vec![];
    for c in &list {
        let name = c["name"].as_str().unwrap_or("");
        let id = c["id"].as_str().unwrap_or("");
        let Some(coll) = staged.iter().find(|s| s.id == id) else {
            continue;
        };
        if coll.kind == CollectionType::View {
            continue;
        }
        let mut del = ctx.sql();
        del.push("DELETE FROM ").ident(&coll.name);
        tx.execute(&del).await?;
        let mut count = Sql::new(basalt_core::sql::Dialect::Sqlite);
        count.push("SELECT COUNT(*) FROM ").ident(name);
        let total = db.query(&count)?.scalar_int().max(0) as u64;
        step(name, 0, total);
        // A page of rows at a time: memory stays bounded whatever the table's size.
        let mut copied = 0i64;
        loop {
            let mut q = Sql::new(basalt_core::sql::Dialect::Sqlite);
            q.push("SELECT * FROM ")
                .ident(name)
                .push(" ORDER BY rowid LIMIT ")
                .bind(Value::Int(PAGE))
                .push(" OFFSET ")
                .bind(Value::Int(copied));
            let rows = db.query(&q)?;
            if rows.rows.is_empty() {
                break;
            }
            let at: Vec<Option<usize>> = coll.fields.iter().map(|f| rows.col(&f.name)).collect();
            for r in &rows.rows {
                let mut data = Data::new();
                for (f, i) in coll.fields.iter().zip(&at) {
                    let v = match i {
                        Some(i) => value_of(f.ty(), f.is_multiple(), &r[*i]),
                        None => basalt_core::record::zero(f),
                    };
                    data.insert(f.name.clone(), v);
                }
                tx.execute(&crate::records::insert_sql(ctx, coll, &data)?)
                    .await?;
            }
            copied += rows.rows.len() as i64;
            step(name, copied as u64, total.max(copied as u64));
        }
        counts.push((coll.name.clone(), copied));
    }
    tx.commit().await?;
    crate::collections::import_done(ctx, &[]).await?;
    ctx.cache.clear();
    for (name, n) in counts {
        let mut q = ctx.sql();
        q.push("SELECT COUNT(*) FROM ").ident(&name);
        let got = ctx.store.query(&q).await?.scalar_int();
        report.collections.push((name, n, got));
    }

    // Request logs, from auxiliary.db.
    let aux = pb_data.join("auxiliary.db");
    if aux.is_file() {
        if let Some(logs) = ctx.logs.get() {
            let adb = ReadOnly::open(&aux)?;
            let (mut found, mut written) = (0u64, 0u64);
            loop {
                let mut q = Sql::new(basalt_core::sql::Dialect::Sqlite);
                q.push("SELECT id, created, level, message, data FROM _logs ORDER BY created, rowid LIMIT ")
                    .bind(Value::Int(PAGE))
                    .push(" OFFSET ")
                    .bind(Value::Int(found as i64));
                let rows = adb.query(&q)?;
                if rows.rows.is_empty() {
                    break;
                }
                let entries: Vec<(String, String, i64, String, String)> = rows
                    .rows
                    .iter()
                    .map(|r| {
                        let level = match &r[2] {
                            Value::Int(i) => *i,
                            other => text(other).parse().unwrap_or(0),
                        };
                        let data = match text(&r[4]) {
                            d if d.is_empty() => "{}".to_string(),
                            d => d,
                        };
                        (text(&r[0]), text(&r[1]), level, text(&r[3]), data)
                    })
                    .collect();
                found += entries.len() as u64;
                written += logs.import(entries).await?;
            }
            report.logs = (found, written);
            step("request logs", written, found);
        }
    }

    // Settings, unless PocketBase encrypted them.
    let mut q = Sql::new(basalt_core::sql::Dialect::Sqlite);
    q.push("SELECT value FROM _params WHERE id = 'settings'");
    if let Some(Json::Object(mut s)) = db.query(&q)?.rows.first().map(|r| parse(&r[0])) {
        s.retain(|k, _| ctx.settings().get(k).is_some());
        crate::settings::patch(ctx, &Json::Object(s)).await?;
        report.settings = true;
    }

    // Files: PocketBase's storage/ has the layout of local storage here.
    // Files, per collection folder (`storage/<collection id>/…`).
    let from = pb_data.join("storage");
    if from.is_dir() {
        let to = ctx.files.data_dir.join("storage");
        for e in std::fs::read_dir(&from).map_err(io_err)? {
            let e = e.map_err(io_err)?;
            let id = e.file_name().to_string_lossy().to_string();
            let (found, copied) = if e.file_type().map_err(io_err)?.is_dir() {
                copy_tree(&e.path(), &to.join(&id)).map_err(io_err)?
            } else {
                std::fs::create_dir_all(&to).map_err(io_err)?;
                std::fs::copy(e.path(), to.join(&id)).map_err(io_err)?;
                (1, 1)
            };
            let name = ctx.collection(&id).map_or(id, |c| c.name.clone());
            step(&format!("files of {name}"), copied, found);
            report.files.0 += found;
            report.files.1 += copied;
            report.files_by.push((name, found, copied));
        }
    }
    Ok(report)
}

/// Whether the target holds nothing of its own: no collection beyond the system ones and `users`, no
/// record in `users` or `_superusers`.
pub async fn target_is_empty(ctx: &AppCtx) -> ServiceResult<bool> {
    let cols = ctx.collections();
    if cols.list.iter().any(|c| !c.system && c.name != "users") {
        return Ok(false);
    }
    for t in ["users", "_superusers"] {
        let mut q = ctx.sql();
        q.push("SELECT COUNT(*) FROM ").ident(t);
        if ctx.store.query(&q).await?.scalar_int() > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies a folder tree; answers (files found, files copied).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<(u64, u64)> {
    let mut n = (0, 0);
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            let (a, b) = copy_tree(&e.path(), &dst)?;
            n.0 += a;
            n.1 += b;
        } else {
            n.0 += 1;
            std::fs::copy(e.path(), &dst)?;
            n.1 += 1;
        }
    }
    Ok(n)
}
