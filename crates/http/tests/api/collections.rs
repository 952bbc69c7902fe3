//! Collections API: CRUD, real tables and columns, online schema changes that keep data, indexes.

use serde_json::json;

use crate::helpers::{assert_error, TestApp};

async fn create_view_list_delete(app: TestApp) {
    let c = app
        .collection(json!({"name": "notes", "fields": [{"name": "body", "type": "text"}]}))
        .await;
    assert_eq!(
        c["id"],
        json!(basalt_core::id::collection_id("base", "notes"))
    );
    assert_eq!(c["fields"][0]["name"], "id");
    let r = app.get("/api/collections/notes", app.su()).await;
    assert_eq!(r.0, 200);
    assert_eq!(r.1["name"], "notes");
    let list = app
        .get_q(
            "/api/collections",
            app.su(),
            &[("filter", "name = 'notes'")],
        )
        .await;
    assert_eq!(list.0, 200, "{}", list.1);
    assert_eq!(list.1["totalItems"], 1);
    assert_eq!(list.1["items"][0]["name"], "notes");
    assert_eq!(app.delete("/api/collections/notes", app.su()).await.0, 204);
    assert_error(&app.get("/api/collections/notes", app.su()).await, 404);
    assert_error(&app.get("/api/collections/notes/records", None).await, 404);
}

async fn defaults_exist_and_are_protected(app: TestApp) {
    for name in ["_superusers", "users"] {
        let r = app.get(&format!("/api/collections/{name}"), app.su()).await;
        assert_eq!(r.0, 200, "{name}");
        assert_eq!(r.1["type"], "auth");
    }
    assert_error(
        &app.delete("/api/collections/_superusers", app.su()).await,
        400,
    );
    // guests 401, users 403
    assert_error(&app.get("/api/collections", None).await, 401);
    let (_, tok) = app.user("u1@example.com").await;
    assert_error(&app.get("/api/collections", Some(&tok)).await, 403);
}

async fn schema_changes_keep_data(app: TestApp) {
    let c = app
        .collection(
            json!({"name": "items", "listRule": "", "viewRule": "", "fields": [
                {"name": "title", "type": "text"},
                {"name": "qty", "type": "number"},
                {"name": "tag", "type": "select", "values": ["a", "b"], "maxSelect": 1}
            ]}),
        )
        .await;
    let rec = app
        .record("items", json!({"title": "keep me", "qty": 3, "tag": "a"}))
        .await;
    let id = rec["id"].as_str().unwrap().to_string();
    // rename title -> name, remove qty, add flag, make tag multi
    let mut fields = c["fields"].as_array().unwrap().clone();
    fields.retain(|f| f["name"] != "qty");
    for f in fields.iter_mut() {
        if f["name"] == "title" {
            f["name"] = json!("name");
        }
        if f["name"] == "tag" {
            f["maxSelect"] = json!(2);
        }
    }
    fields.push(json!({"name": "flag", "type": "bool"}));
    let r = app
        .patch(
            "/api/collections/items",
            app.su(),
            json!({"fields": fields, "indexes": ["CREATE INDEX idx_items_name ON items (name)"]}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let got = app
        .get(&format!("/api/collections/items/records/{id}"), None)
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["name"], "keep me", "renamed column keeps its data");
    assert_eq!(got.1["tag"], json!(["a"]), "single select became a list");
    assert_eq!(got.1["flag"], false);
    assert!(got.1.get("qty").is_none(), "removed field is gone");
    // back to single
    let mut fields = r.1["fields"].as_array().unwrap().clone();
    for f in fields.iter_mut() {
        if f["name"] == "tag" {
            f["maxSelect"] = json!(1);
        }
    }
    assert_eq!(
        app.patch(
            "/api/collections/items",
            app.su(),
            json!({"fields": fields})
        )
        .await
        .0,
        200
    );
    let got = app
        .get(&format!("/api/collections/items/records/{id}"), None)
        .await;
    assert_eq!(got.1["tag"], "a");
    // the table is real: the column is queryable directly
    let mut q = basalt_core::sql::Sql::new(app.store().dialect());
    q.push("SELECT \"name\", \"flag\" FROM \"items\"");
    let rows = app.store().query(&q).await.unwrap();
    assert_eq!(rows.rows.len(), 1);
    // field type changes are refused
    let mut fields = r.1["fields"].as_array().unwrap().clone();
    for f in fields.iter_mut() {
        if f["name"] == "flag" {
            f["type"] = json!("text");
        }
    }
    assert_error(
        &app.patch(
            "/api/collections/items",
            app.su(),
            json!({"fields": fields}),
        )
        .await,
        400,
    );
}

async fn unique_index_is_enforced(app: TestApp) {
    app.collection(json!({"name": "codes", "fields": [{"name": "code", "type": "text"}], "indexes": ["CREATE UNIQUE INDEX idx_code ON codes (code)"]})).await;
    app.record("codes", json!({"code": "A"})).await;
    let r = app
        .post(
            "/api/collections/codes/records",
            app.su(),
            json!({"code": "A"}),
        )
        .await;
    let data = assert_error(&r, 400);
    assert_eq!(data["code"]["code"], "validation_not_unique");
    // an index on duplicate data is rejected, and the old definition stays
    app.collection(json!({"name": "dups", "fields": [{"name": "v", "type": "text"}]}))
        .await;
    app.record("dups", json!({"v": "x"})).await;
    app.record("dups", json!({"v": "x"})).await;
    let r = app
        .patch(
            "/api/collections/dups",
            app.su(),
            json!({"indexes": ["CREATE UNIQUE INDEX idx_v ON dups (v)"]}),
        )
        .await;
    assert_error(&r, 400);
    assert_eq!(
        app.get("/api/collections/dups", app.su()).await.1["indexes"],
        json!([])
    );
}

async fn truncate_and_import(app: TestApp) {
    app.collection(json!({"name": "t1", "fields": [{"name": "v", "type": "text"}]}))
        .await;
    app.record("t1", json!({"v": "x"})).await;
    assert_eq!(
        app.delete("/api/collections/t1/truncate", app.su()).await.0,
        204
    );
    let l = app.get("/api/collections/t1/records", app.su()).await;
    assert_eq!(l.1["totalItems"], 0);
    let r = app
        .raw(
            reqwest::Method::PUT,
            "/api/collections/import",
            app.su(),
            "application/json",
            serde_json::to_vec(&json!({"collections": [
                {"name": "imp_a", "type": "base", "fields": [{"name": "x", "type": "text"}]},
                {"name": "t1", "type": "base", "fields": [{"name": "v", "type": "text"}, {"name": "w", "type": "number"}]}
            ], "deleteMissing": false}))
            .unwrap(),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    assert_eq!(app.get("/api/collections/imp_a", app.su()).await.0, 200);
    // a relation to a collection later in the list resolves
    let r = app
        .raw(
            reqwest::Method::PUT,
            "/api/collections/import",
            app.su(),
            "application/json",
            serde_json::to_vec(&json!({"collections": [
                {"name": "imp_child", "type": "base", "fields": [{"name": "parent", "type": "relation", "collectionId": "imp_parent", "maxSelect": 1}]},
                {"name": "imp_parent", "type": "base", "fields": [{"name": "n", "type": "text"}]}
            ]}))
            .unwrap(),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    let t1 = app.get("/api/collections/t1", app.su()).await.1;
    assert!(t1["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "w"));
}

/// An import that fails part-way changes nothing: not the new collections before the failing one,
/// not the changed fields of existing ones, not the deletions `deleteMissing` asked for.
async fn failed_import_changes_nothing(app: TestApp) {
    app.collection(json!({"name": "keep_me", "fields": [{"name": "v", "type": "text"}]}))
        .await;
    app.record("keep_me", json!({"v": "x"})).await;
    let before = app.get("/api/collections", app.su()).await.1["totalItems"].clone();
    let r = app
        .raw(
            reqwest::Method::PUT,
            "/api/collections/import",
            app.su(),
            "application/json",
            serde_json::to_vec(&json!({"collections": [
                {"name": "atomic_new", "type": "base", "fields": [{"name": "x", "type": "text"}]},
                {"name": "keep_me", "type": "base", "fields": [{"name": "v", "type": "text"}, {"name": "added", "type": "number"}]},
                {"name": "atomic_bad", "type": "base", "listRule": "nosuchfield = 1", "fields": [{"name": "y", "type": "text"}]}
            ], "deleteMissing": true}))
            .unwrap(),
        )
        .await;
    assert_eq!(r.0, 400, "{}", r.1);
    assert_eq!(
        r.1["data"]["collections"]["code"],
        "validation_collections_import_failure"
    );
    assert_eq!(
        app.get("/api/collections/atomic_new", app.su()).await.0,
        404
    );
    assert_eq!(
        app.get("/api/collections/atomic_bad", app.su()).await.0,
        404
    );
    let kept = app.get("/api/collections/keep_me", app.su()).await.1;
    assert!(
        !kept["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "added"),
        "the update of keep_me was rolled back: {kept}"
    );
    assert_eq!(
        app.get("/api/collections", app.su()).await.1["totalItems"],
        before
    );
    // The table is intact and still usable.
    let l = app.get("/api/collections/keep_me/records", app.su()).await;
    assert_eq!(l.1["totalItems"], 1);
    app.record("keep_me", json!({"v": "y"})).await;
    // The same import without the bad collection goes through, in one step.
    let r = app
        .raw(
            reqwest::Method::PUT,
            "/api/collections/import",
            app.su(),
            "application/json",
            serde_json::to_vec(&json!({"collections": [
                {"name": "atomic_new", "type": "base", "fields": [{"name": "x", "type": "text"}]},
                {"name": "keep_me", "type": "base", "fields": [{"name": "v", "type": "text"}, {"name": "added", "type": "number"}]}
            ]}))
            .unwrap(),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    assert_eq!(
        app.get("/api/collections/atomic_new", app.su()).await.0,
        200
    );
}

async fn scaffolds_and_settings(app: TestApp) {
    let s = app.get("/api/collections/meta/scaffolds", app.su()).await;
    assert_eq!(s.0, 200);
    assert_eq!(s.1["auth"]["fields"].as_array().unwrap().len(), 6);
    let st = app.get("/api/settings", app.su()).await;
    assert_eq!(st.0, 200);
    assert_eq!(st.1["batch"]["maxRequests"], 50);
    let p = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"meta": {"appName": "Acme"}, "smtp": {"password": "hunter22"}}),
        )
        .await;
    assert_eq!(p.0, 200, "{}", p.1);
    assert_eq!(p.1["meta"]["appName"], "Acme");
    assert!(
        p.1["smtp"].get("password").is_none(),
        "secrets are never returned"
    );
    assert_eq!(
        app.get("/api/settings", app.su()).await.1["meta"]["appName"],
        "Acme"
    );
    assert_error(
        &app.patch(
            "/api/settings",
            app.su(),
            json!({"batch": {"maxRequests": "many"}}),
        )
        .await,
        400,
    );
    assert_error(&app.get("/api/settings", None).await, 401);
}

async fn health(app: TestApp) {
    let r = app.get("/api/health", None).await;
    assert_eq!(
        r,
        (
            200,
            json!({"code": 200, "data": {}, "message": "API is healthy."})
        )
    );
}

crate::both!(
    create_view_list_delete,
    defaults_exist_and_are_protected,
    schema_changes_keep_data,
    unique_index_is_enforced,
    truncate_and_import,
    failed_import_changes_nothing,
    scaffolds_and_settings,
    health
);
