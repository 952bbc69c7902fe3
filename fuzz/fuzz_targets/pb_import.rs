//! The PocketBase import reader (`pbimport::import`): the input, as JSON, becomes a PocketBase
//! `pb_data/data.db` (`_collections` rows with their fields, indexes and options, a table of rows per
//! collection, `_params` settings), which is imported into a SQLite data directory emptied of its
//! collections after each input.
//! Invariant beyond "never panics": a successful import reports, for each collection, as many rows
//! stored as it read.
//!
//! Input: `{"collections": [{"id", "name", "type", "system", "fields": [...], "indexes": [...],
//! "listRule", ..., "options": {...}}], "rows": {"<name>": [{"column": value}]}, "settings": {...}}`.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;

mod common;
use common::runtime;
use rusqlite::types::Value as Sv;
use serde_json::Value as Json;

fn sql_value(v: &Json) -> Sv {
    match v {
        Json::Null => Sv::Null,
        Json::Bool(b) => Sv::Integer(*b as i64),
        Json::Number(n) => n
            .as_i64()
            .map(Sv::Integer)
            .unwrap_or_else(|| Sv::Real(n.as_f64().unwrap_or(0.0))),
        Json::String(s) => Sv::Text(s.clone()),
        other => Sv::Text(other.to_string()),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Writes `pb_data/data.db` from the input; `None` when SQLite refuses it (not the importer's input).
fn write_pb_data(dir: &Path, doc: &Json) -> Option<()> {
    let db = rusqlite::Connection::open(dir.join("data.db")).ok()?;
    db.execute_batch(
        "CREATE TABLE _collections (id TEXT PRIMARY KEY, system BOOLEAN, type TEXT, name TEXT, fields JSON, \
         indexes JSON, listRule TEXT, viewRule TEXT, createRule TEXT, updateRule TEXT, deleteRule TEXT, \
         options JSON, created TEXT, updated TEXT);
         CREATE TABLE _params (id TEXT PRIMARY KEY, value JSON, created TEXT, updated TEXT);",
    )
    .ok()?;
    for c in doc["collections"].as_array().into_iter().flatten() {
        let text = |k: &str| match &c[k] {
            Json::Null => Sv::Null,
            Json::String(s) => Sv::Text(s.clone()),
            other => Sv::Text(other.to_string()),
        };
        let json = |k: &str| Sv::Text(c[k].to_string());
        db.execute(
            "INSERT INTO _collections VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, '', '')",
            rusqlite::params![
                text("id"),
                sql_value(&c["system"]),
                text("type"),
                text("name"),
                json("fields"),
                json("indexes"),
                text("listRule"),
                text("viewRule"),
                text("createRule"),
                text("updateRule"),
                text("deleteRule"),
                json("options"),
            ],
        )
        .ok()?;
    }
    for (name, rows) in doc["rows"].as_object().into_iter().flatten() {
        let rows: Vec<&serde_json::Map<String, Json>> = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Json::as_object)
            .collect();
        let mut cols: Vec<&String> = rows.iter().flat_map(|r| r.keys()).collect();
        cols.sort();
        cols.dedup();
        if cols.is_empty() {
            continue;
        }
        let list: Vec<String> = cols.iter().map(|c| quote(c)).collect();
        db.execute_batch(&format!(
            "CREATE TABLE {} ({})",
            quote(name),
            list.join(", ")
        ))
        .ok()?;
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(name),
            list.join(", "),
            marks.join(", ")
        );
        for r in rows {
            let vals: Vec<Sv> = cols
                .iter()
                .map(|c| r.get(*c).map(sql_value).unwrap_or(Sv::Null))
                .collect();
            db.execute(&insert, rusqlite::params_from_iter(vals)).ok()?;
        }
    }
    if doc["settings"].is_object() {
        db.execute(
            "INSERT INTO _params VALUES ('settings', ?1, '', '')",
            [doc["settings"].to_string()],
        )
        .ok()?;
    }
    Some(())
}

/// One target data directory for the process (an app per input would keep its files open).
async fn target() -> &'static basalt_service::AppCtx {
    static CTX: tokio::sync::OnceCell<basalt_service::AppCtx> = tokio::sync::OnceCell::const_new();
    CTX.get_or_init(|| async {
        let dir = fresh(
            &std::env::temp_dir(),
            &format!("basalt-fuzz-pb-target-{}", std::process::id()),
        );
        let store = basalt_store::open_with(&dir, None, basalt_store::Synchronous::Normal)
            .await
            .unwrap();
        basalt_service::build_with(
            store,
            basalt_service::Options {
                data_dir: Some(dir),
                ..Default::default()
            },
        )
        .await
        .unwrap()
    })
    .await
}

fn fresh(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Json>(data) else {
        return;
    };
    if !doc.is_object() {
        return;
    }
    let root = std::env::temp_dir().join(format!("basalt-fuzz-pb-{}", std::process::id()));
    let pb = fresh(&root, "pb_data");
    if write_pb_data(&pb, &doc).is_none() {
        return;
    }
    runtime().block_on(async {
        let ctx = target().await;
        if let Ok(report) = basalt_service::pbimport::import(ctx, &pb, &|_| {}).await {
            for (name, read, stored) in &report.collections {
                assert_eq!(read, stored, "{name}: rows read vs stored");
            }
        }
        // Back to a target without collections of its own for the next input: the schema-as-code
        // path, keeping only the system collections.
        let system: Vec<Json> = basalt_service::schemadiff::export(ctx)
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["system"] == true)
            .cloned()
            .collect();
        basalt_service::collections::import_with(
            ctx,
            &serde_json::json!({"collections": system, "deleteMissing": true}),
            false,
        )
        .await
        .expect("resetting the target");
    });
});
