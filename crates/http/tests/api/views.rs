//! View collections: fields inferred from the query as PocketBase infers them (checked against the
//! reference: a source column is a `_clone_` of its field, `COUNT(*)` an integer number, another
//! expression json), read through the records API under listRule/viewRule with filters, sort and
//! expand, never written, replaced when the query changes, dropped with the collection.

use serde_json::{json, Value};

use crate::helpers::{assert_error, TestApp};

async fn setup(app: &TestApp) -> (String, String) {
    app.patch(
        "/api/collections/users",
        app.su(),
        json!({"listRule": "", "viewRule": ""}),
    )
    .await;
    let (alice, _) = app.user("alice@example.com").await;
    app.collection(json!({
        "name": "posts", "listRule": "", "viewRule": "", "createRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "views", "type": "number"},
            {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
        ],
    }))
    .await;
    for (t, v) in [("a", 1), ("b", 5), ("c", 3)] {
        app.record("posts", json!({"title": t, "views": v, "author": alice}))
            .await;
    }
    (alice, "posts".into())
}

fn field<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name}: {c}"))
}

async fn views_infer_fields_and_read(app: TestApp) {
    let (alice, _) = setup(&app).await;
    let r = app
        .post(
            "/api/collections",
            app.su(),
            json!({"name": "popular", "type": "view", "listRule": "", "viewRule": "",
                "createRule": "", "fields": [{"name": "ignored", "type": "text"}],
                "viewQuery": "SELECT p.id, p.title, p.author, (p.views * 2) AS double, p.views FROM posts p WHERE p.views > 2"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let c = r.1;
    assert_eq!(c["type"], "view");
    assert_eq!(c["createRule"], Value::Null, "views are never written");
    let names: Vec<&str> = c["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["id", "title", "author", "double", "views"]);
    assert_eq!(field(&c, "id")["type"], "text");
    assert_eq!(field(&c, "id")["primaryKey"], true);
    assert_eq!(field(&c, "title")["type"], "text");
    assert!(field(&c, "title")["id"]
        .as_str()
        .unwrap()
        .starts_with("_clone_"));
    assert_eq!(field(&c, "author")["type"], "relation");
    assert_eq!(field(&c, "author")["collectionId"], "_pb_users_auth_");
    assert_eq!(field(&c, "double")["type"], "json");
    assert_eq!(field(&c, "views")["type"], "number");

    // Read like any collection: filter, sort, expand through the cloned relation.
    let l = app
        .get_q(
            "/api/collections/popular/records",
            None,
            &[
                ("sort", "-views"),
                ("expand", "author"),
                ("filter", "double >= 6"),
            ],
        )
        .await;
    assert_eq!(l.0, 200, "{}", l.1);
    let items = l.1["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["title"], "b");
    assert_eq!(items[0]["double"], json!(10));
    assert_eq!(items[0]["expand"]["author"]["id"], json!(alice));
    let id = items[1]["id"].as_str().unwrap();
    let one = app
        .get(&format!("/api/collections/popular/records/{id}"), None)
        .await;
    assert_eq!(one.1["title"], "c");
    // Never written.
    let w = app
        .post(
            "/api/collections/popular/records",
            app.su(),
            json!({"title": "x"}),
        )
        .await;
    assert_error(&w, 400);

    // A new query replaces the view; unchanged fields keep their ids.
    let title_id = field(&c, "title")["id"].clone();
    let u = app
        .patch(
            "/api/collections/popular",
            app.su(),
            json!({"viewQuery": "SELECT id, title, COUNT(*) AS n FROM posts GROUP BY id, title"}),
        )
        .await;
    assert_eq!(u.0, 200, "{}", u.1);
    assert_eq!(field(&u.1, "title")["id"], title_id);
    assert_eq!(field(&u.1, "n")["type"], "number");
    assert_eq!(field(&u.1, "n")["onlyInt"], true);
    let l = app.get("/api/collections/popular/records", None).await;
    assert_eq!(l.1["totalItems"], json!(3), "{}", l.1);
    assert_eq!(l.1["items"][0]["n"], json!(1));
    // Dropped with the collection.
    assert_eq!(
        app.delete("/api/collections/popular", app.su()).await.0,
        204
    );
    assert_eq!(
        app.get("/api/collections/popular/records", None).await.0,
        404
    );
}

async fn bad_view_queries_are_refused(app: TestApp) {
    setup(&app).await;
    for (q, needle) in [
        ("", "validation_required"),
        ("DELETE FROM posts", "only a single SELECT"),
        ("SELECT title FROM posts", "missing required"),
        ("SELECT id FROM nowhere", "Invalid query"),
        ("SELECT id FROM posts; SELECT 1", "only a single SELECT"),
        // PocketBase's rule: an expression is wrapped in parentheses.
        (
            "SELECT id, views * 2 AS d FROM posts",
            "invalid identifier parts [views * 2 AS d]",
        ),
    ] {
        let r = app
            .post(
                "/api/collections",
                app.su(),
                json!({"name": "v", "type": "view", "viewQuery": q}),
            )
            .await;
        let d = assert_error(&r, 400);
        assert!(d["viewQuery"].to_string().contains(needle), "{q}: {d}");
    }
    assert_eq!(app.get("/api/collections/v", app.su()).await.0, 404);
}

/// `POST /api/collections/meta/dry-run-view`: the fields a view would have and a sample of rows,
/// nothing created; PocketBase's messages.
async fn dry_run_view(app: TestApp) {
    setup(&app).await;
    let r = app
        .post(
            "/api/collections/meta/dry-run-view",
            app.su(),
            json!({"query": "SELECT id, title, COUNT(*) AS n FROM posts GROUP BY id, title ORDER BY title"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let names: Vec<&str> = r.1["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["id", "title", "n"]);
    assert_eq!(r.1["fields"][2]["type"], "number");
    let sample = r.1["sample"].as_array().unwrap();
    assert_eq!(sample.len(), 3);
    assert_eq!(sample[0]["title"], "a");
    assert_eq!(sample[0]["n"], json!(1));
    let c = app.get("/api/collections", app.su()).await;
    assert!(
        !c.1.to_string().contains("_dry_run_view"),
        "nothing created"
    );
    let missing = app
        .post("/api/collections/meta/dry-run-view", app.su(), json!({}))
        .await;
    assert_eq!(
        assert_error(&missing, 400)["query"]["code"],
        "validation_required"
    );
    let no_id = app
        .post(
            "/api/collections/meta/dry-run-view",
            app.su(),
            json!({"query": "SELECT title FROM posts"}),
        )
        .await;
    assert_error(&no_id, 400);
    assert_eq!(
        no_id.1["message"],
        "Invalid view query. Raw error: \nmissing required id column (you can use `(ROW_NUMBER() OVER()) as id` if you don't have one)."
    );
    assert_error(
        &app.post(
            "/api/collections/meta/dry-run-view",
            None,
            json!({"query": "SELECT id FROM posts"}),
        )
        .await,
        401,
    );
}

crate::both!(
    views_infer_fields_and_read,
    bad_view_queries_are_refused,
    dry_run_view
);
