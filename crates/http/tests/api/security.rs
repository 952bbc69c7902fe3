//! Regression tests of the outside attack test (issue 14): each reproduces an attack that once worked
//! and asserts what the attacker now sees.

use serde_json::json;

use crate::helpers::{assert_error, TestApp};

/// Body modifiers (`credits+`, `+tags`, `owner-`, …) are resolved into the body before an access rule
/// reads `@request.body`, so a rule forbidding a field forbids it under every spelling: REST update,
/// REST create and inside `/api/batch`.
async fn modifiers_cannot_bypass_body_rules(app: TestApp) {
    app.collection(json!({
        "name": "wallets",
        "listRule": "owner = @request.auth.id",
        "viewRule": "owner = @request.auth.id",
        "createRule": "owner = @request.auth.id && @request.body.discount:isset = false && @request.body.tags:isset = false",
        "updateRule": "owner = @request.auth.id && @request.body.credits:isset = false && @request.body.owner:changed = false && @request.body.tags:isset = false && @request.body.friends:changed = false",
        "fields": [
            {"name": "credits", "type": "number"},
            {"name": "discount", "type": "number"},
            {"name": "note", "type": "text"},
            {"name": "tags", "type": "select", "values": ["a", "b", "vip"], "maxSelect": 3},
            {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
            {"name": "friends", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 5}
        ]
    }))
    .await;
    let (alice, ta) = app.user("alice@example.com").await;
    let (bob, _tb) = app.user("bob@example.com").await;
    let w = app
        .post(
            "/api/collections/wallets/records",
            Some(&ta),
            json!({"owner": alice, "credits": 10, "note": "x"}),
        )
        .await;
    assert_eq!(w.0, 200, "{}", w.1);
    let id = w.1["id"].as_str().unwrap().to_string();
    let path = format!("/api/collections/wallets/records/{id}");

    // The plain field is refused, and so is every modifier spelling of it.
    for body in [
        json!({"credits": 1000}),
        json!({"credits+": 1000}),
        json!({"+credits": 1000}),
        json!({"credits-": -1000}),
        json!({"owner+": bob}),
        json!({"owner-": alice}),
        json!({"tags+": "vip"}),
        json!({"+tags": ["vip"]}),
        json!({"friends+": [bob]}),
    ] {
        let r = app.patch(&path, Some(&ta), body.clone()).await;
        assert_eq!(r.0, 404, "{body} must be refused: {}", r.1);
    }
    // A modifier that resolves to the stored value has not changed it (`:changed` sees the result):
    // appending the owner again, or prepending to a single relation (the last id is kept).
    for body in [json!({"owner+": alice}), json!({"+owner": bob})] {
        let r = app.patch(&path, Some(&ta), body.clone()).await;
        assert_eq!(r.0, 200, "{body} leaves the owner as it is: {}", r.1);
    }
    let r = app.patch(&path, Some(&ta), json!({"note": "y"})).await;
    assert_eq!(r.0, 200, "{}", r.1);
    let now = app.get(&path, Some(&ta)).await;
    assert_eq!(now.1["credits"], json!(10), "credits untouched: {}", now.1);
    assert_eq!(now.1["owner"], json!(alice), "owner untouched: {}", now.1);
    assert_eq!(now.1["tags"], json!([]));
    assert_eq!(now.1["friends"], json!([]));

    // Create: `discount+` is `discount` to the createRule.
    for body in [
        json!({"owner": alice, "discount+": 90}),
        json!({"owner": alice, "+discount": 90}),
        json!({"owner": alice, "tags+": ["vip"]}),
    ] {
        let r = app
            .post("/api/collections/wallets/records", Some(&ta), body)
            .await;
        assert_error(&r, 400);
    }

    // Batch: the same rules through `/api/batch`, and nothing of a refused batch is written.
    app.patch(
        "/api/settings",
        app.su(),
        json!({"batch": {"enabled": true, "maxRequests": 10}}),
    )
    .await;
    let r = app
        .post(
            "/api/batch",
            Some(&ta),
            json!({"requests": [
                {"method": "PATCH", "url": format!("/api/collections/wallets/records/{id}"), "body": {"credits+": 1000}}
            ]}),
        )
        .await;
    assert_eq!(r.0, 400, "{}", r.1);
    let r = app
        .post(
            "/api/batch",
            Some(&ta),
            json!({"requests": [
                {"method": "POST", "url": "/api/collections/wallets/records", "body": {"owner": alice, "discount+": 90}}
            ]}),
        )
        .await;
    assert_eq!(r.0, 400, "{}", r.1);
    let now = app.get(&path, Some(&ta)).await;
    assert_eq!(now.1["credits"], json!(10), "{}", now.1);
    let all = app
        .get("/api/collections/wallets/records", Some(&ta))
        .await;
    assert_eq!(all.1["totalItems"], json!(1), "{}", all.1);
}

crate::both!(modifiers_cannot_bypass_body_rules);
