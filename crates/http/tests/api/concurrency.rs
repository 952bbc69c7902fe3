//! Concurrent writes to one record: every PATCH keeps its field, and the outbox tells the true
//! history (each update event's `before` is the previous event's record). On one node and, on
//! PostgreSQL, through two nodes sharing the database.

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TestApp};

const FIELDS: usize = 16;

fn opts() -> basalt_http::Options {
    let mut o = basalt_http::Options::default();
    // Keep every event for the check below.
    o.events.prune_ms = 3_600_000;
    o
}

async fn setup(app: &TestApp) -> String {
    let fields: Vec<Value> = (0..FIELDS)
        .map(|i| json!({"name": format!("f{i}"), "type": "number"}))
        .collect();
    app.collection(json!({"name": "counters", "viewRule": "", "updateRule": "", "fields": fields}))
        .await;
    app.record("counters", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// 16 PATCHes of distinct fields at once, spread over `urls`; then the record and the events.
async fn patch_all_and_check(app: &TestApp, urls: &[String], id: &str) {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..FIELDS {
        let url = format!(
            "{}/api/collections/counters/records/{id}",
            urls[i % urls.len()]
        );
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .patch(&url)
                .json(&json!({ format!("f{i}"): i + 1 }))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let got = app
        .get(&format!("/api/collections/counters/records/{id}"), None)
        .await
        .1;
    for i in 0..FIELDS {
        assert_eq!(got[format!("f{i}")], json!(i + 1), "field f{i} lost: {got}");
    }
    let events = basalt_events::outbox::read(app.ctx.store.as_ref(), 0, i64::MAX, 10_000)
        .await
        .unwrap();
    let mine: Vec<_> = events.iter().filter(|e| e.record_id == id).collect();
    assert_eq!(mine.len(), FIELDS + 1, "one create and {FIELDS} updates");
    for w in mine.windows(2) {
        assert_eq!(
            w[1].before.as_ref(),
            w[0].record.as_ref(),
            "event {} does not start where event {} ended",
            w[1].seq,
            w[0].seq
        );
    }
    let last = mine.last().unwrap().record.as_ref().unwrap();
    for i in 0..FIELDS {
        assert_eq!(last[&format!("f{i}")], json!(i + 1));
    }
}

async fn concurrent_patches_keep_every_field(backend: Backend) {
    let app = spawn_app_with(backend, opts()).await;
    let id = setup(&app).await;
    patch_all_and_check(&app, std::slice::from_ref(&app.url), &id).await;
}

crate::both_backends!(concurrent_patches_keep_every_field);

/// A second node on the same PostgreSQL database takes half of the PATCHes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_through_two_nodes() {
    let app = spawn_app_with(Backend::Postgres, opts()).await;
    let id = setup(&app).await;
    let dir = crate::helpers::TempDir(
        std::env::temp_dir().join(format!("basalt-node-b-{}", basalt_core::id::random_id(8))),
    );
    let store = basalt_store::open(&dir.0, app.db_url.as_deref())
        .await
        .unwrap();
    let mut o = opts();
    o.data_dir = Some(dir.0.clone());
    let b = basalt_http::build_with(store, o).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(basalt_http::serve(b, listener, std::future::pending()));
    patch_all_and_check(&app, &[app.url.clone(), b_url], &id).await;
}
