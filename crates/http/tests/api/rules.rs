//! Access rules with the protocol's exact outcomes.

use serde_json::json;

use crate::helpers::{assert_error, TestApp};

async fn owned(app: &TestApp) {
    app.collection(json!({
        "name": "docs",
        "listRule": "owner = @request.auth.id",
        "viewRule": "owner = @request.auth.id",
        "createRule": "@request.auth.id != '' && owner = @request.auth.id",
        "updateRule": "owner = @request.auth.id",
        "deleteRule": "owner = @request.auth.id",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "secret", "type": "text", "hidden": true},
            {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1}
        ]
    }))
    .await;
}

async fn owner_rules(app: TestApp) {
    owned(&app).await;
    let (alice, ta) = app.user("alice@example.com").await;
    let (_bob, tb) = app.user("bob@example.com").await;
    // create: rule fails for guests and for someone else's owner → 400
    assert_error(
        &app.post(
            "/api/collections/docs/records",
            None,
            json!({"title": "x", "owner": alice}),
        )
        .await,
        400,
    );
    assert_error(
        &app.post(
            "/api/collections/docs/records",
            Some(&tb),
            json!({"title": "x", "owner": alice}),
        )
        .await,
        400,
    );
    let d = app
        .post(
            "/api/collections/docs/records",
            Some(&ta),
            json!({"title": "mine", "owner": alice, "secret": "s"}),
        )
        .await;
    assert_eq!(d.0, 200, "{}", d.1);
    let id = d.1["id"].as_str().unwrap().to_string();
    assert!(
        d.1.get("secret").is_none(),
        "hidden fields are not shown to users"
    );
    // list filters; view/update/delete → 404 for others
    assert_eq!(app.ids("docs", Some(&ta), &[]).await, vec![id.clone()]);
    assert!(app.ids("docs", Some(&tb), &[]).await.is_empty());
    assert!(app.ids("docs", None, &[]).await.is_empty());
    let path = format!("/api/collections/docs/records/{id}");
    assert_error(&app.get(&path, Some(&tb)).await, 404);
    assert_error(
        &app.patch(&path, Some(&tb), json!({"title": "stolen"}))
            .await,
        404,
    );
    assert_error(&app.delete(&path, Some(&tb)).await, 404);
    assert_eq!(app.get(&path, Some(&ta)).await.1["title"], "mine");
    // superusers bypass and see hidden fields (values sent by users were dropped)
    let su = app.get(&path, app.su()).await;
    assert_eq!(su.1["secret"], "");
    assert_eq!(
        app.patch(&path, Some(&ta), json!({"title": "edited"}))
            .await
            .1["title"],
        "edited"
    );
    assert_eq!(app.delete(&path, Some(&ta)).await.0, 204);
}

async fn null_and_empty_rules(app: TestApp) {
    app.collection(json!({"name": "locked", "fields": [{"name": "v", "type": "text"}]}))
        .await;
    let (_, tok) = app.user("carl@example.com").await;
    for t in [None, Some(tok.as_str())] {
        let r = app.get("/api/collections/locked/records", t).await;
        assert_eq!(r.1["message"], "Only superusers can perform this action.");
        assert_error(&r, 403);
        assert_error(
            &app.post("/api/collections/locked/records", t, json!({"v": "x"}))
                .await,
            403,
        );
    }
    assert_eq!(
        app.get("/api/collections/locked/records", app.su()).await.0,
        200
    );
    app.collection(json!({"name": "open", "listRule": "", "viewRule": "", "createRule": "", "fields": [{"name": "v", "type": "text"}]})).await;
    assert_eq!(
        app.post("/api/collections/open/records", None, json!({"v": "x"}))
            .await
            .0,
        200
    );
    assert_eq!(app.ids("open", None, &[]).await.len(), 1);
}

async fn request_body_and_collection_rules(app: TestApp) {
    app.collection(json!({"name": "teams", "listRule": "", "viewRule": "", "fields": [{"name": "name", "type": "text"}]})).await;
    let teams = app.get("/api/collections/teams", app.su()).await.1;
    app.collection(json!({"name": "members", "fields": [
        {"name": "user", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
        {"name": "team", "type": "relation", "collectionId": teams["id"], "maxSelect": 1}
    ]}))
    .await;
    app.collection(json!({
        "name": "boards",
        "listRule": "@collection.members.user ?= @request.auth.id && @collection.members.team ?= team",
        "createRule": "@request.body.title:isset = true && @request.body.title != 'forbidden'",
        "fields": [{"name": "title", "type": "text"}, {"name": "team", "type": "relation", "collectionId": teams["id"], "maxSelect": 1}]
    }))
    .await;
    let (u1, t1) = app.user("m1@example.com").await;
    let (u2, t2) = app.user("m2@example.com").await;
    let red = app.record("teams", json!({"name": "red"})).await["id"].clone();
    let blue = app.record("teams", json!({"name": "blue"})).await["id"].clone();
    app.record("members", json!({"user": u1, "team": red}))
        .await;
    app.record("members", json!({"user": u2, "team": blue}))
        .await;
    let b_red = app
        .record("boards", json!({"title": "r", "team": red}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.record("boards", json!({"title": "b", "team": blue}))
        .await;
    // the two conditions on @collection.members must hold for the same member row
    assert_eq!(app.ids("boards", Some(&t1), &[]).await, vec![b_red]);
    assert_eq!(app.ids("boards", Some(&t2), &[]).await.len(), 1);
    // @request.body in createRule
    assert_error(
        &app.post(
            "/api/collections/boards/records",
            Some(&t1),
            json!({"team": red}),
        )
        .await,
        400,
    );
    assert_error(
        &app.post(
            "/api/collections/boards/records",
            Some(&t1),
            json!({"title": "forbidden"}),
        )
        .await,
        400,
    );
    assert_eq!(
        app.post(
            "/api/collections/boards/records",
            Some(&t1),
            json!({"title": "ok"})
        )
        .await
        .0,
        200
    );
}

async fn email_visibility(app: TestApp) {
    app.patch(
        "/api/collections/users",
        app.su(),
        json!({"listRule": "", "viewRule": ""}),
    )
    .await;
    let (a, _ta) = app.user("vis-a@example.com").await;
    let (_b, tb) = app.user("vis-b@example.com").await;
    let seen = app
        .get(&format!("/api/collections/users/records/{a}"), Some(&tb))
        .await;
    assert!(seen.1.get("email").is_none(), "{}", seen.1);
    let (_, ta) = (0, _ta);
    app.patch(
        &format!("/api/collections/users/records/{a}"),
        app.su(),
        json!({"emailVisibility": true}),
    )
    .await;
    let seen = app
        .get(&format!("/api/collections/users/records/{a}"), Some(&tb))
        .await;
    assert_eq!(seen.1["email"], "vis-a@example.com");
    let _ = ta;
}

async fn header_rules(app: TestApp) {
    app.collection(json!({"name": "gated", "listRule": "@request.headers.x_api_key = 'k1'", "fields": [{"name": "v", "type": "text"}]})).await;
    app.record("gated", json!({"v": "x"})).await;
    assert!(app.ids("gated", None, &[]).await.is_empty());
    let r = app
        .send_with(
            app.client
                .get(format!("{}/api/collections/gated/records", app.url))
                .header("X-Api-Key", "k1"),
        )
        .await;
    assert_eq!(r.1["items"].as_array().map(Vec::len), Some(1), "{}", r.1);
}

/// A client filter cannot look through a relation at rows the related collection's listRule hides.
async fn filters_through_relations_respect_the_related_list_rule(app: TestApp) {
    // users: listRule "id = @request.auth.id" (the default)
    app.collection(json!({"name": "notes", "listRule": "", "fields": [
        {"name": "title", "type": "text"},
        {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1}
    ]}))
    .await;
    let (alice, ta) = app.user("alice-rel@example.com").await;
    app.record("notes", json!({"title": "a", "author": alice}))
        .await;
    let probe = [("filter", "author.email = 'alice-rel@example.com'")];
    assert!(
        app.ids("notes", None, &probe).await.is_empty(),
        "guests cannot probe users' emails"
    );
    let (_, tb) = app.user("bob-rel@example.com").await;
    assert!(
        app.ids("notes", Some(&tb), &probe).await.is_empty(),
        "nor can other users"
    );
    assert_eq!(
        app.ids("notes", Some(&ta), &probe).await.len(),
        1,
        "alice sees her own"
    );
    assert_eq!(
        app.ids("notes", app.su(), &probe).await.len(),
        1,
        "superusers see all"
    );
    let back = [("filter", "notes_via_author.title ?= 'a'")];
    let r = app
        .get_q("/api/collections/users/records", Some(&ta), &back)
        .await;
    assert_eq!(r.1["items"].as_array().map(Vec::len), Some(1), "{}", r.1);
}

/// Emails hidden by emailVisibility cannot be probed with filters or sorts by other users.
async fn hidden_emails_cannot_be_probed(app: TestApp) {
    app.patch(
        "/api/collections/users",
        app.su(),
        json!({"listRule": "@request.auth.id != ''"}),
    )
    .await;
    let (_, _ta) = app.user("secret-alice@example.com").await;
    let (bob, tb) = app.user("bob-probe@example.com").await;
    let probe = [("filter", "email ~ 'secret-alice'")];
    assert!(
        app.ids("users", Some(&tb), &probe).await.is_empty(),
        "hidden email matches nothing"
    );
    let own = [("filter", "email = 'bob-probe@example.com'")];
    assert_eq!(
        app.ids("users", Some(&tb), &own).await,
        vec![bob.clone()],
        "own email is visible"
    );
    assert_eq!(
        app.ids("users", app.su(), &probe).await.len(),
        1,
        "superusers see all"
    );
}

/// `:changed` compares with the stored value; hidden relations are not expanded for users.
async fn changed_modifier_and_hidden_relations(app: TestApp) {
    app.collection(json!({"name": "tickets", "listRule": "", "viewRule": "", "createRule": "",
        "updateRule": "@request.body.locked:changed = false",
        "fields": [{"name": "title", "type": "text"}, {"name": "locked", "type": "bool"},
                   {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1, "hidden": true}]}))
    .await;
    let (u, _) = app.user("ticket-owner@example.com").await;
    let t = app
        .record("tickets", json!({"title": "t", "locked": true, "owner": u}))
        .await;
    let path = format!(
        "/api/collections/tickets/records/{}",
        t["id"].as_str().unwrap()
    );
    assert_eq!(
        app.patch(&path, None, json!({"title": "t2", "locked": true}))
            .await
            .0,
        200,
        "same value: not changed"
    );
    assert_error(&app.patch(&path, None, json!({"locked": false})).await, 404);
    let r = app.get_q(&path, None, &[("expand", "owner")]).await;
    assert!(
        r.1.get("expand").is_none() && r.1.get("owner").is_none(),
        "{}",
        r.1
    );
}

crate::both!(
    hidden_emails_cannot_be_probed,
    changed_modifier_and_hidden_relations,
    filters_through_relations_respect_the_related_list_rule,
    header_rules,
    owner_rules,
    null_and_empty_rules,
    request_body_and_collection_rules,
    email_visibility
);
