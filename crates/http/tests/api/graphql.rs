//! `/api/graphql`: the same records, rules, validation, outbox, sign-in checks and rate limits as
//! REST, one SQL statement per relation per nesting level, limits checked before any SQL, and a
//! schema that follows collection changes. Subscriptions and the reference `graphql` library's checks
//! are in `sdk-tests/graphql.test.mjs`.

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TestApp};

/// Posts a GraphQL request; every answer is 200 with `{data, errors}`.
async fn gql(app: &TestApp, token: Option<&str>, query: &str, vars: Value) -> Value {
    let r = app
        .post(
            "/api/graphql",
            token,
            json!({"query": query, "variables": vars}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    r.1
}

/// The data of an answer without errors.
fn data(v: &Value) -> &Value {
    assert!(v.get("errors").is_none(), "errors: {v}");
    &v["data"]
}

/// The first error's `extensions.code`, message and `extensions.data`.
fn error(v: &Value) -> (String, String, Value) {
    let e = &v["errors"][0];
    assert!(e.is_object(), "expected an error: {v}");
    (
        e["extensions"]["code"].as_str().unwrap_or("").to_string(),
        e["message"].as_str().unwrap_or("").to_string(),
        e["extensions"]["data"].clone(),
    )
}

/// posts (author → users, published, a hidden `secret`) and comments (post → posts).
async fn schema(app: &TestApp) {
    app.collection(json!({
        "name": "posts",
        "listRule": "published = true || author = @request.auth.id",
        "viewRule": "published = true || author = @request.auth.id",
        "createRule": "@request.auth.id != '' && author = @request.auth.id",
        "updateRule": "author = @request.auth.id",
        "deleteRule": "author = @request.auth.id",
        "fields": [
            {"name": "title", "type": "text", "required": true},
            {"name": "views", "type": "number"},
            {"name": "published", "type": "bool"},
            {"name": "secret", "type": "text", "hidden": true},
            {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
        ],
    }))
    .await;
    let posts = app.get("/api/collections/posts", app.su()).await.1["id"].clone();
    app.collection(json!({
        "name": "comments",
        "listRule": "",
        "viewRule": "",
        "createRule": "",
        "fields": [
            {"name": "body", "type": "text"},
            {"name": "post", "type": "relation", "collectionId": posts, "maxSelect": 1},
        ],
    }))
    .await;
}

async fn reads_follow_rules_like_rest(app: TestApp) {
    schema(&app).await;
    let (alice, ta) = app.user("alice@example.com").await;
    let (_, tb) = app.user("bob@example.com").await;
    // Public profiles; emails stay private unless emailVisibility.
    app.patch(
        "/api/collections/users",
        app.su(),
        json!({"listRule": "", "viewRule": ""}),
    )
    .await;
    app.patch(
        &format!("/api/collections/users/records/{alice}"),
        Some(&ta),
        json!({"name": "Alice"}),
    )
    .await;
    let public = app
        .record("posts", json!({"title": "public", "published": true, "author": alice, "secret": "s1", "views": 2}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let draft = app
        .record(
            "posts",
            json!({"title": "draft", "published": false, "author": alice, "views": 1}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (i, body) in ["b", "a", "c"].iter().enumerate() {
        app.record("comments", json!({"body": body, "post": public}))
            .await;
        let _ = i;
    }
    app.record("comments", json!({"body": "on draft", "post": draft}))
        .await;

    let q = r#"query($f: String) { posts(filter: $f, sort: "title") { totalItems items {
        id title views
        author { id name email }
        comments_via_post(sort: "-body", perPage: 2) { body }
    } } }"#;
    // A guest: the published post only, as REST lists it; the author's email is not visible.
    let g = gql(&app, None, q, json!({})).await;
    let d = data(&g);
    assert_eq!(
        d["posts"]["totalItems"],
        json!(app.ids("posts", None, &[]).await.len())
    );
    assert_eq!(d["posts"]["items"].as_array().unwrap().len(), 1, "{g}");
    let item = &d["posts"]["items"][0];
    assert_eq!(item["title"], "public");
    assert_eq!(item["views"], json!(2));
    assert_eq!(item["author"]["name"], "Alice");
    assert_eq!(item["author"]["email"], Value::Null, "{item}");
    assert_eq!(
        item["comments_via_post"],
        json!([{"body": "c"}, {"body": "b"}]),
        "back-relation sorted and cut at perPage"
    );
    // The author sees the draft and her own email; another user does not see the draft.
    let a = gql(&app, Some(&ta), q, json!({})).await;
    assert_eq!(data(&a)["posts"]["totalItems"], json!(2));
    assert_eq!(
        data(&a)["posts"]["items"][0]["author"]["email"],
        "alice@example.com"
    );
    assert_eq!(
        data(&a)["posts"]["items"][0]["comments_via_post"],
        json!([{"body": "on draft"}])
    );
    let b = gql(&app, Some(&tb), q, json!({})).await;
    assert_eq!(data(&b)["posts"]["totalItems"], json!(1));
    // A filter through a relation path, compiled by the same compiler.
    let f = gql(
        &app,
        None,
        q,
        json!({"f": "author.name = 'Alice' && views > 1"}),
    )
    .await;
    assert_eq!(data(&f)["posts"]["totalItems"], json!(1));
    // `posts_by_id`: null when not visible, as REST's 404.
    let by = r#"query($id: ID!) { posts_by_id(id: $id) { title } }"#;
    assert_eq!(
        data(&gql(&app, None, by, json!({"id": draft})).await)["posts_by_id"],
        Value::Null
    );
    assert_eq!(
        data(&gql(&app, Some(&ta), by, json!({"id": draft})).await)["posts_by_id"]["title"],
        "draft"
    );
    // A bad filter is the REST error, with its code.
    let bad = gql(&app, None, q, json!({"f": "title ~"})).await;
    let (code, msg, _) = error(&bad);
    assert_eq!(code, "bad_request");
    assert_eq!(msg, "Something went wrong while processing your request.");
    assert_eq!(bad["errors"][0]["path"], json!(["posts"]));
    // Hidden and password fields are not in the schema, even for superusers.
    let t = gql(
        &app,
        app.su(),
        r#"{ p: __type(name: "posts") { fields { name } } u: __type(name: "users") { fields { name } } }"#,
        json!({}),
    )
    .await;
    let names = |k: &str| -> Vec<String> {
        data(&t)[k]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names("p").contains(&"comments_via_post".to_string()));
    assert!(!names("p").contains(&"secret".to_string()), "{t}");
    for f in ["password", "tokenKey"] {
        assert!(!names("u").contains(&f.to_string()), "{f}: {t}");
    }
    assert!(names("u").contains(&"email".to_string()));
}

/// Reads of the store so far (`Store::query` calls).
fn reads(app: &TestApp) -> u64 {
    let mut reg = prometheus_client::registry::Registry::default();
    app.store().metrics().register(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    text.lines()
        .find(|l| l.starts_with("basalt_store_query_duration_seconds_count{kind=\"read\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The fewest store reads of a few runs of the query (background work adds reads, never removes).
async fn statements(app: &TestApp, query: &str, vars: Value) -> u64 {
    let mut best = u64::MAX;
    for _ in 0..4 {
        let before = reads(app);
        let v = gql(app, None, query, vars.clone()).await;
        data(&v);
        best = best.min(reads(app) - before);
    }
    best
}

async fn statements_grow_with_depth_not_rows(app: TestApp) {
    schema(&app).await;
    let mut authors = vec![];
    for i in 0..4 {
        authors.push(app.user(&format!("a{i}@example.com")).await.0);
    }
    for i in 0..20 {
        let p = app
            .record(
                "posts",
                json!({"title": format!("p{i:02}"), "published": true, "author": authors[i % 4]}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        for j in 0..2 {
            app.record("comments", json!({"body": format!("c{j}"), "post": p}))
                .await;
        }
    }
    let q = r#"query($n: Int) { posts(perPage: $n, sort: "title") { items {
        title author { name } comments_via_post { body post { title } }
    } } }"#;
    let v = gql(&app, None, q, json!({"n": 20})).await;
    let items = data(&v)["posts"]["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 20);
    assert!(items
        .iter()
        .all(|i| i["comments_via_post"].as_array().unwrap().len() == 2
            && i["comments_via_post"][0]["post"]["title"] == i["title"]));
    // The list, the authors, the comments, the comments' posts: four, for 5 rows or 20.
    let twenty = statements(&app, q, json!({"n": 20})).await;
    let five = statements(&app, q, json!({"n": 5})).await;
    assert_eq!(
        twenty, five,
        "statements depend on rows: {five} for 5, {twenty} for 20"
    );
    assert_eq!(twenty, 4, "one statement per relation per level");
    // One level less, one statement less; the count runs only when the answer holds it.
    let flat = r#"{ posts(perPage: 20) { items { title author { name } } } }"#;
    assert_eq!(statements(&app, flat, json!({})).await, 2);
    let counted = r#"{ posts(perPage: 20) { totalPages items { title author { name } } } }"#;
    assert_eq!(statements(&app, counted, json!({})).await, 3);
}

async fn writes_share_rules_validation_and_outbox(app: TestApp) {
    schema(&app).await;
    let (alice, ta) = app.user("alice@example.com").await;
    let (_, tb) = app.user("bob@example.com").await;
    let create = r#"mutation($i: posts_create_input!) { create_posts(input: $i) { id title views author { id } } }"#;
    // Validation: the REST error with its field codes.
    let v = gql(&app, Some(&ta), create, json!({"i": {"author": alice}})).await;
    let (code, msg, d) = error(&v);
    assert_eq!(code, "validation_failed", "{v}");
    assert_eq!(msg, "Failed to create record.");
    assert_eq!(d["title"]["code"], "validation_required");
    assert_eq!(v["errors"][0]["extensions"]["status"], json!(400));
    // The createRule: a guest may not create.
    let g = gql(
        &app,
        None,
        create,
        json!({"i": {"title": "x", "author": alice}}),
    )
    .await;
    assert_eq!(error(&g).1, "Failed to create record.");
    // Created: the record, and its event in the outbox.
    let ok = gql(
        &app,
        Some(&ta),
        create,
        json!({"i": {"title": "hello", "views": 1, "author": alice, "published": true}}),
    )
    .await;
    let id = data(&ok)["create_posts"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(data(&ok)["create_posts"]["author"]["id"], json!(alice));
    let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
    q.push("SELECT action FROM _events WHERE record_id = ")
        .bind(basalt_core::sql::Value::Text(id.clone()));
    let rows = app.store().query(&q).await.unwrap();
    assert_eq!(rows.rows.len(), 1, "one create event");
    // Update with a modifier, under the updateRule.
    let upd = r#"mutation($id: ID!) { update_posts(id: $id, input: {views_add: 41, title: "hi"}) { views title } }"#;
    let u = gql(&app, Some(&ta), upd, json!({"id": id})).await;
    assert_eq!(
        data(&u)["update_posts"],
        json!({"views": 42, "title": "hi"})
    );
    let other = gql(&app, Some(&tb), upd, json!({"id": id})).await;
    assert_eq!(error(&other).0, "not_found", "{other}");
    assert_eq!(
        app.get(&format!("/api/collections/posts/records/{id}"), None)
            .await
            .1["views"],
        json!(42)
    );
    // Delete, then REST answers 404.
    let del = r#"mutation($id: ID!) { delete_posts(id: $id) }"#;
    assert_eq!(
        error(&gql(&app, Some(&tb), del, json!({"id": id})).await).0,
        "not_found"
    );
    assert_eq!(
        data(&gql(&app, Some(&ta), del, json!({"id": id})).await)["delete_posts"],
        json!(true)
    );
    assert_eq!(
        app.get(&format!("/api/collections/posts/records/{id}"), app.su())
            .await
            .0,
        404
    );
    let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
    q.push("SELECT action FROM _events WHERE record_id = ")
        .bind(basalt_core::sql::Value::Text(id.clone()));
    assert_eq!(app.store().query(&q).await.unwrap().rows.len(), 3);
}

async fn post_parts(app: &TestApp, parts: &[(&str, Option<&str>, &[u8])]) -> crate::helpers::Resp {
    let (ct, body) = crate::files::multipart(parts);
    app.raw(reqwest::Method::POST, "/api/graphql", None, &ct, body)
        .await
}

async fn files_by_the_multipart_spec(app: TestApp) {
    app.collection(json!({
        "name": "docs", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "files", "type": "file", "maxSelect": 3, "maxSize": 100000},
        ],
    }))
    .await;
    let ops = json!({
        "query": "mutation($i: docs_create_input!) { create_docs(input: $i) { id files } }",
        "variables": {"i": {"title": "two", "files": [null, null]}},
    });
    let map = json!({"0": ["variables.i.files.0"], "1": ["variables.i.files.1"]}).to_string();
    let ops_text = ops.to_string();
    let r = post_parts(
        &app,
        &[
            ("operations", None, ops_text.as_bytes()),
            ("map", None, map.as_bytes()),
            ("0", Some("a.txt"), b"hello"),
            ("1", Some("b.txt"), b"world"),
        ],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let rec = &r.1["data"]["create_docs"];
    let files = rec["files"].as_array().unwrap_or_else(|| panic!("{}", r.1));
    assert_eq!(files.len(), 2);
    let rec_files = files.clone();
    let id = rec["id"].as_str().unwrap();
    let name = files[0].as_str().unwrap();
    let f = app
        .client
        .get(format!("{}/api/files/docs/{id}/{name}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(f.status().as_u16(), 200);
    assert_eq!(f.text().await.unwrap(), "hello");
    // Remove one with the modifier input; append another.
    let ops = json!({
        "query": "mutation($id: ID!, $i: docs_update_input!) { update_docs(id: $id, input: $i) { files } }",
        "variables": {"id": id, "i": {"files_remove": [name], "files_append": [null]}},
    });
    let ops_text = ops.to_string();
    let map = json!({"x": ["variables.i.files_append.0"]}).to_string();
    let r = post_parts(
        &app,
        &[
            ("operations", None, ops_text.as_bytes()),
            ("map", None, map.as_bytes()),
            ("x", Some("c.txt"), b"third"),
        ],
    )
    .await;
    let files = r.1["data"]["update_docs"]["files"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.1))
        .clone();
    assert_eq!(files.len(), 2, "{}", r.1);
    assert!(!files.contains(&json!(name)));
    let kept = rec_files[1].clone();
    assert!(files.contains(&kept), "{}", r.1);
    let added = files
        .iter()
        .find(|f| **f != kept)
        .unwrap()
        .as_str()
        .unwrap();
    let f = app
        .client
        .get(format!("{}/api/files/docs/{id}/{added}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(f.text().await.unwrap(), "third");
    // A map naming a missing part is a 400 before anything runs.
    let map = json!({"9": ["variables.i.files_append.0"]}).to_string();
    let r = post_parts(
        &app,
        &[
            ("operations", None, ops_text.as_bytes()),
            ("map", None, map.as_bytes()),
        ],
    )
    .await;
    assert_eq!(r.0, 400, "{}", r.1);
}

async fn sign_in_shares_lockout_mfa_and_rate_limits(app: TestApp) {
    let smtp = crate::servers::Smtp::start().await;
    crate::servers::use_smtp(&app, &smtp).await;
    let (id, _) = app.user("carol@example.com").await;
    let pw = r#"mutation($p: String!) { users_auth_with_password(identity: "carol@example.com", password: $p) { token mfaId record { id email } } }"#;
    let ok = gql(&app, None, pw, json!({"p": "password123"})).await;
    let a = &data(&ok)["users_auth_with_password"];
    assert_eq!(a["record"], json!({"id": id, "email": "carol@example.com"}));
    let token = a["token"].as_str().unwrap().to_string();
    // The token works on REST, and auth_refresh over GraphQL takes the REST token.
    let me = app
        .get(
            &format!("/api/collections/users/records/{id}"),
            Some(&token),
        )
        .await;
    assert_eq!(me.0, 200);
    let refresh = gql(
        &app,
        Some(&token),
        "mutation { users_auth_refresh { token record { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&refresh)["users_auth_refresh"]["record"]["id"],
        json!(id)
    );

    // MFA: the password alone answers an mfaId; an OTP completes it.
    app.patch(
        "/api/collections/users",
        app.su(),
        json!({"mfa": {"enabled": true}, "otp": {"enabled": true, "length": 6}}),
    )
    .await;
    let first = gql(&app, None, pw, json!({"p": "password123"})).await;
    let f = &data(&first)["users_auth_with_password"];
    assert_eq!(f["token"], Value::Null);
    let mfa = f["mfaId"].as_str().expect("mfaId").to_string();
    let otp = gql(
        &app,
        None,
        r#"mutation { users_request_otp(email: "carol@example.com") { otpId } }"#,
        json!({}),
    )
    .await;
    let otp_id = data(&otp)["users_request_otp"]["otpId"]
        .as_str()
        .unwrap()
        .to_string();
    let mail = smtp.wait("carol@example.com", "one-time password").await;
    let code = crate::authflows::otp_code(&mail, 6);
    let done = gql(
        &app,
        None,
        r#"mutation($o: String!, $c: String!, $m: String) { users_auth_with_otp(otpId: $o, password: $c, mfaId: $m) { token record { id } } }"#,
        json!({"o": otp_id, "c": code, "m": mfa}),
    )
    .await;
    assert!(
        data(&done)["users_auth_with_otp"]["token"].is_string(),
        "{done}"
    );
    app.patch(
        "/api/collections/users",
        app.su(),
        json!({"mfa": {"enabled": false}}),
    )
    .await;

    // Lockout: five wrong passwords over GraphQL lock this network out of REST sign-in too.
    for _ in 0..5 {
        let w = gql(&app, None, pw, json!({"p": "wrong-password"})).await;
        assert_eq!(error(&w).0, "bad_request", "{w}");
    }
    let locked = app
        .post(
            "/api/collections/users/auth-with-password",
            None,
            json!({"identity": "carol@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(locked.0, 429, "{}", locked.1);
    let g = gql(&app, None, pw, json!({"p": "password123"})).await;
    assert_eq!(error(&g).0, "too_many_requests");

    // Rate limits of a typed action: one bucket for REST and GraphQL.
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"rateLimits": {"enabled": true, "rules": [
                {"label": "users:list", "maxRequests": 2, "duration": 60, "audience": ""}
            ]}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let list = "{ users { totalItems } }";
    data(&gql(&app, None, list, json!({})).await);
    assert_eq!(app.get("/api/collections/users/records", None).await.0, 200);
    let third = gql(&app, None, list, json!({})).await;
    let (code, _, _) = error(&third);
    assert_eq!(code, "too_many_requests", "{third}");
    assert_eq!(third["errors"][0]["extensions"]["status"], json!(429));
    assert_eq!(app.get("/api/collections/users/records", None).await.0, 429);
}

async fn limits_refuse_before_any_sql(app: TestApp) {
    schema(&app).await;
    let before = reads(&app);
    let deep = r#"{ posts { items { comments_via_post { post { comments_via_post { post {
        comments_via_post { post { comments_via_post { post { comments_via_post { post { id } } } } } } } } } } } } }"#;
    let (code, msg, _) = error(&gql(&app, None, deep, json!({})).await);
    assert_eq!(code, "bad_request");
    assert!(msg.contains("nested too deep"), "{msg}");
    let costly = r#"query($n: Int) { posts(perPage: 1000) { items { comments_via_post(perPage: $n) {
        post { comments_via_post(perPage: 1000) { body } } } } } }"#;
    let (_, msg, _) = error(&gql(&app, None, costly, json!({"n": 1000})).await);
    assert!(msg.contains("too expensive"), "{msg}");
    let wide: String = (0..250).map(|i| format!("a{i}: __typename ")).collect();
    let (_, msg, _) = error(&gql(&app, None, &format!("{{ {wide} }}"), json!({})).await);
    assert!(msg.contains("too many fields"), "{msg}");
    // Fragments spreading fragments twice over 40 levels would expand to 2^40 fields: refused as
    // they expand, not after.
    let mut bomb = String::from("{ ...F0 }");
    for i in 0..40 {
        bomb.push_str(&format!(
            " fragment F{i} on Query {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    bomb.push_str(" fragment F40 on Query { __typename }");
    let began = std::time::Instant::now();
    let (_, msg, _) = error(&gql(&app, None, &bomb, json!({})).await);
    assert!(msg.contains("too many fields"), "{msg}");
    assert!(began.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(reads(&app), before, "refused queries ran no SQL");
    // The same shape within the limits runs.
    let v = gql(&app, None, &costly.replace("1000", "10"), json!({"n": 10})).await;
    data(&v);
    // Operations by type and outcome in /metrics.
    let text = crate::metrics::scrape(&app).await;
    let count = |outcome: &str| {
        crate::metrics::sample(
            &text,
            "basalt_graphql_operation_duration_seconds_count",
            &[("operation", "query"), ("outcome", outcome)],
        )
    };
    assert_eq!(count("refused"), Some(4.0), "{text}");
    assert_eq!(count("ok"), Some(1.0));
}

/// An operation that calls no rate-limited service operation (introspection, `__typename`) is limited
/// by the path label rules of `/api/graphql`, as REST limits routes without a typed action.
async fn untyped_operations_are_limited_by_path(app: TestApp) {
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"rateLimits": {"enabled": true, "rules": [
                {"label": "/api/graphql", "maxRequests": 2, "duration": 60, "audience": ""}
            ]}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    for _ in 0..2 {
        data(&gql(&app, None, "{ __typename }", json!({})).await);
    }
    let third = gql(&app, None, "{ __typename }", json!({})).await;
    assert_eq!(error(&third).0, "too_many_requests", "{third}");
}

async fn schema_follows_collection_changes(app: TestApp) {
    let q = "{ notes { items { text } } }";
    let before = gql(&app, None, q, json!({})).await;
    assert!(error(&before).1.contains("notes"), "{before}");
    app.collection(
        json!({"name": "notes", "listRule": "", "fields": [{"name": "text", "type": "text"}]}),
    )
    .await;
    app.record("notes", json!({"text": "first"})).await;
    let after = gql(&app, None, q, json!({})).await;
    assert_eq!(data(&after)["notes"]["items"], json!([{"text": "first"}]));
    // A new field appears, a deleted collection goes.
    let r = app
        .patch(
            "/api/collections/notes",
            app.su(),
            json!({"fields": [{"name": "text", "type": "text"}, {"name": "stars", "type": "number"}]}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    data(&gql(&app, None, "{ notes { items { text stars } } }", json!({})).await);
    assert_eq!(app.delete("/api/collections/notes", app.su()).await.0, 204);
    assert!(error(&gql(&app, None, q, json!({})).await)
        .1
        .contains("notes"));
}

/// `@request.method` is the method REST would use for the same operation, so rules written against it
/// hold for GraphQL (sent as POST) too.
async fn rules_see_the_rest_method(app: TestApp) {
    app.collection(json!({
        "name": "m",
        "listRule": "@request.method = 'GET'",
        "viewRule": "@request.method = 'GET'",
        "createRule": "@request.method = 'POST'",
        "updateRule": "@request.method = 'PATCH'",
        "deleteRule": "@request.method = 'DELETE'",
        "fields": [{"name": "t", "type": "text"}],
    }))
    .await;
    let c = gql(
        &app,
        None,
        r#"mutation { create_m(input: {t: "a"}) { id } }"#,
        json!({}),
    )
    .await;
    let id = data(&c)["create_m"]["id"].as_str().unwrap().to_string();
    let v = gql(
        &app,
        None,
        r#"query($id: ID!) { m { totalItems } m_by_id(id: $id) { t } }"#,
        json!({"id": id}),
    )
    .await;
    assert_eq!(data(&v)["m"]["totalItems"], json!(1));
    assert_eq!(data(&v)["m_by_id"]["t"], "a");
    let u = gql(
        &app,
        None,
        r#"mutation($id: ID!) { update_m(id: $id, input: {t: "b"}) { t } }"#,
        json!({"id": id}),
    )
    .await;
    assert_eq!(data(&u)["update_m"]["t"], "b");
    let d = gql(
        &app,
        None,
        r#"mutation($id: ID!) { delete_m(id: $id) }"#,
        json!({"id": id}),
    )
    .await;
    assert_eq!(data(&d)["delete_m"], json!(true));
}

async fn http_forms_and_switches(backend: Backend) {
    let app = crate::helpers::spawn_app(backend).await;
    let get = app
        .get_q(
            "/api/graphql",
            None,
            &[("query", "{ users { totalItems } }")],
        )
        .await;
    assert_eq!(get.0, 200, "{}", get.1);
    assert_eq!(get.1["data"]["users"]["totalItems"], json!(0));
    let m = app
        .get_q(
            "/api/graphql",
            None,
            &[("query", "mutation { delete_users(id: \"x\") }")],
        )
        .await;
    assert!(error(&m.1).1.contains("POST"), "{}", m.1);
    let page = app
        .client
        .get(format!("{}/api/graphql", app.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("GraphiQL"));
    let bad = app
        .raw(
            reqwest::Method::POST,
            "/api/graphql",
            None,
            "application/json",
            b"{nope".to_vec(),
        )
        .await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    let no_query = app
        .post("/api/graphql", None, json!({"variables": {}}))
        .await;
    assert_eq!(no_query.0, 400, "{}", no_query.1);

    // Introspection and GraphiQL off; then the endpoint off.
    let off = basalt_http::Options {
        graphql: basalt_service::GraphqlOptions {
            introspection: false,
            graphiql: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let app = spawn_app_with(backend, off).await;
    let i = gql(&app, None, "{ __schema { types { name } } }", json!({})).await;
    assert!(i.get("errors").is_some(), "{i}");
    data(&gql(&app, None, "{ users { totalItems } }", json!({})).await);
    let page = app
        .client
        .get(format!("{}/api/graphql", app.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 400);
    let disabled = basalt_http::Options {
        graphql: basalt_service::GraphqlOptions {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let app = spawn_app_with(backend, disabled).await;
    let r = app
        .post(
            "/api/graphql",
            None,
            json!({"query": "{ users { totalItems } }"}),
        )
        .await;
    assert_eq!(r.0, 404, "{}", r.1);
}

crate::both!(
    reads_follow_rules_like_rest,
    statements_grow_with_depth_not_rows,
    writes_share_rules_validation_and_outbox,
    files_by_the_multipart_spec,
    sign_in_shares_lockout_mfa_and_rate_limits,
    limits_refuse_before_any_sql,
    schema_follows_collection_changes,
    rules_see_the_rest_method,
    untyped_operations_are_limited_by_path,
);

/// A GraphQL socket is closed at the realtime lifetime, as SSE and realtime WebSocket streams are.
async fn socket_lifetime_is_bounded(backend: Backend) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app_with(
        backend,
        basalt_http::Options {
            realtime: basalt_service::realtime::RealtimeConfig {
                max_lifetime: std::time::Duration::from_secs(1),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let url = app.url.replace("http://", "ws://") + "/api/graphql";
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "connection_init"}).to_string().into(),
    ))
    .await
    .unwrap();
    let began = std::time::Instant::now();
    let mut acked = false;
    let code = loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("the server closes the socket")
            .expect("a message")
            .unwrap();
        match m {
            Message::Text(t) => acked |= t.contains("connection_ack"),
            Message::Close(f) => break f.map(|f| u16::from(f.code)),
            _ => {}
        }
    };
    assert!(acked);
    assert_eq!(code, Some(1000));
    assert!(began.elapsed() < std::time::Duration::from_secs(4));
}

mod forms {
    crate::both_backends!(http_forms_and_switches, socket_lifetime_is_bounded);
    use super::{http_forms_and_switches, socket_lifetime_is_bounded};
}
