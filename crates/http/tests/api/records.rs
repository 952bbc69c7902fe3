//! Records API: CRUD, paging, sort, expand (incl. back-relations), fields, modifiers, cascades.

use serde_json::json;

use crate::helpers::{assert_error, TestApp};

async fn setup(app: &TestApp) {
    app.collection(json!({"name": "authors", "listRule": "", "viewRule": "", "fields": [{"name": "name", "type": "text"}]})).await;
    let authors = app.get("/api/collections/authors", app.su()).await.1;
    app.collection(json!({"name": "posts", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "", "fields": [
        {"name": "title", "type": "text", "required": true},
        {"name": "views", "type": "number"},
        {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
        {"name": "author", "type": "relation", "collectionId": authors["id"], "maxSelect": 1},
        {"name": "created", "type": "autodate", "onCreate": true},
        {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}
    ]})).await;
}

async fn crud(app: TestApp) {
    setup(&app).await;
    let r = app
        .post(
            "/api/collections/posts/records",
            None,
            json!({"title": "hello", "views": 2, "tags": ["a"]}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let id = r.1["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 15);
    assert_eq!(r.1["collectionName"], "posts");
    let created = r.1["created"].as_str().unwrap();
    assert_eq!(created.len(), 24, "{created}");
    assert_eq!(&created[10..11], " ");
    assert!(created.ends_with('Z'));
    let v = app
        .get(&format!("/api/collections/posts/records/{id}"), None)
        .await;
    assert_eq!(v.1["title"], "hello");
    let u = app
        .patch(
            &format!("/api/collections/posts/records/{id}"),
            None,
            json!({"views+": 5, "tags+": ["b"], "tags-": "a"}),
        )
        .await;
    assert_eq!(u.0, 200, "{}", u.1);
    assert_eq!(u.1["views"], 7);
    assert_eq!(u.1["tags"], json!(["b"]));
    assert_eq!(
        app.delete(&format!("/api/collections/posts/records/{id}"), None)
            .await
            .0,
        204
    );
    assert_error(
        &app.get(&format!("/api/collections/posts/records/{id}"), None)
            .await,
        404,
    );
    // client-chosen id
    let r = app
        .post(
            "/api/collections/posts/records",
            None,
            json!({"id": "abcdefghij12345", "title": "x"}),
        )
        .await;
    assert_eq!(r.1["id"], "abcdefghij12345");
    let dup = app
        .post(
            "/api/collections/posts/records",
            None,
            json!({"id": "abcdefghij12345", "title": "x"}),
        )
        .await;
    assert_eq!(
        assert_error(&dup, 400)["id"]["code"],
        "validation_not_unique"
    );
}

async fn paging_and_sorting(app: TestApp) {
    setup(&app).await;
    for i in 0..25 {
        app.record(
            "posts",
            json!({"title": format!("t{i:02}"), "views": i % 5}),
        )
        .await;
    }
    let r = app
        .get_q(
            "/api/collections/posts/records",
            None,
            &[("perPage", "10"), ("page", "3"), ("sort", "title")],
        )
        .await;
    assert_eq!(r.1["totalItems"], 25);
    assert_eq!(r.1["totalPages"], 3);
    assert_eq!(r.1["items"].as_array().unwrap().len(), 5);
    assert_eq!(r.1["items"][0]["title"], "t20");
    let r = app
        .get_q(
            "/api/collections/posts/records",
            None,
            &[("perPage", "5000"), ("skipTotal", "1")],
        )
        .await;
    assert_eq!(r.1["perPage"], 1000, "clamped and echoed");
    assert_eq!(r.1["totalItems"], -1);
    let r = app
        .get_q("/api/collections/posts/records", None, &[("page", "99")])
        .await;
    assert_eq!(r.1["items"], json!([]));
    let r = app
        .get_q(
            "/api/collections/posts/records",
            None,
            &[("sort", "-views,title"), ("perPage", "3")],
        )
        .await;
    let titles: Vec<&str> = r.1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, vec!["t04", "t09", "t14"]);
}

async fn expand_and_fields(app: TestApp) {
    setup(&app).await;
    let a = app.record("authors", json!({"name": "Ann"})).await;
    let p = app
        .record("posts", json!({"title": "p1", "author": a["id"]}))
        .await;
    let pid = p["id"].as_str().unwrap();
    let r = app
        .get_q(
            &format!("/api/collections/posts/records/{pid}"),
            None,
            &[("expand", "author"), ("fields", "title,expand.author.name")],
        )
        .await;
    assert_eq!(
        r.1,
        json!({"title": "p1", "expand": {"author": {"name": "Ann"}}})
    );
    let aid = a["id"].as_str().unwrap();
    let r = app
        .get_q(
            &format!("/api/collections/authors/records/{aid}"),
            None,
            &[("expand", "posts_via_author")],
        )
        .await;
    assert_eq!(
        r.1["expand"]["posts_via_author"][0]["title"], "p1",
        "{}",
        r.1
    );
    let r = app
        .get_q(
            "/api/collections/posts/records",
            None,
            &[("filter", "author.name = 'Ann'")],
        )
        .await;
    assert_eq!(r.1["totalItems"], 1);
}

/// Expand on a list is batched: every record still gets exactly its own related records.
async fn expand_on_lists(app: TestApp) {
    setup(&app).await;
    let ann = app.record("authors", json!({"name": "Ann"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bo = app.record("authors", json!({"name": "Bo"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (t, a) in [
        ("p1", &ann),
        ("p2", &bo),
        ("p3", &ann),
        ("p4", &String::new()),
    ] {
        app.record("posts", json!({"title": t, "author": a})).await;
    }
    let r = app
        .get_q(
            "/api/collections/posts/records",
            None,
            &[("expand", "author"), ("sort", "title")],
        )
        .await;
    let got: Vec<(String, Option<String>)> = r.1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["title"].as_str().unwrap().to_string(),
                i["expand"]["author"]["name"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("p1".into(), Some("Ann".into())),
            ("p2".into(), Some("Bo".into())),
            ("p3".into(), Some("Ann".into())),
            ("p4".into(), None)
        ]
    );
    assert_eq!(
        r.1["items"][3]["expand"],
        json!({}),
        "empty relation: expand is {{}}"
    );
    let r = app
        .get_q(
            "/api/collections/authors/records",
            None,
            &[("expand", "posts_via_author"), ("sort", "name")],
        )
        .await;
    let titles = |i: usize| -> Vec<String> {
        let mut v: Vec<String> = r.1["items"][i]["expand"]["posts_via_author"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| p["title"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(titles(0), vec!["p1", "p3"]);
    assert_eq!(titles(1), vec!["p2"]);
}

async fn relations_are_checked_and_cleared(app: TestApp) {
    setup(&app).await;
    let r = app
        .post(
            "/api/collections/posts/records",
            None,
            json!({"title": "x", "author": "nosuchid0000000"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, 400)["author"]["code"],
        "validation_missing_rel_records"
    );
    let a = app.record("authors", json!({"name": "Bo"})).await;
    let p = app
        .record("posts", json!({"title": "p", "author": a["id"]}))
        .await;
    assert_eq!(
        app.delete(
            &format!(
                "/api/collections/authors/records/{}",
                a["id"].as_str().unwrap()
            ),
            app.su()
        )
        .await
        .0,
        204
    );
    let got = app
        .get(
            &format!(
                "/api/collections/posts/records/{}",
                p["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        got.1["author"], "",
        "a deleted relation target is removed from the referencing record"
    );
}

async fn multipart_bodies(app: TestApp) {
    setup(&app).await;
    let a = app.record("authors", json!({"name": "Mo"})).await;
    let b = "XyZbOuNdArY";
    let part = |name: &str, value: &str| {
        format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    };
    let body = [
        part("title", "from a form"),
        part("views", "3"),
        part("tags", "a"),
        part("tags", "c"),
        part("@jsonPayload", &json!({"author": a["id"]}).to_string()),
        format!("--{b}--\r\n"),
    ]
    .concat();
    let r = app
        .raw(
            reqwest::Method::POST,
            "/api/collections/posts/records",
            None,
            &format!("multipart/form-data; boundary={b}"),
            body.into_bytes(),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["title"], "from a form");
    assert_eq!(r.1["views"], 3, "numbers are inferred");
    assert_eq!(r.1["tags"], json!(["a", "c"]), "repeated keys make a list");
    assert_eq!(r.1["author"], a["id"], "@jsonPayload is merged");
    let file = format!("--{b}\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhi\r\n--{b}--\r\n");
    let r = app
        .raw(
            reqwest::Method::POST,
            "/api/collections/posts/records",
            None,
            &format!("multipart/form-data; boundary={b}"),
            file.into_bytes(),
        )
        .await;
    assert_error(&r, 400);
}

async fn json_values_round_trip(app: TestApp) {
    app.collection(
        json!({"name": "docs", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "fields": [{"name": "t", "type": "text"}, {"name": "meta", "type": "json"}]}),
    )
    .await;
    // A string holding JSON is parsed, as the protocol does ("5" → 5); other strings stay strings.
    for (sent, v) in [
        (json!(5), json!(5)),
        (json!("5"), json!(5)),
        (json!("five"), json!("five")),
        (json!(1.5), json!(1.5)),
        (json!({"a": [1, "x"]}), json!({"a": [1, "x"]})),
        (json!(true), json!(true)),
        (json!(null), json!(null)),
    ] {
        let r = app.record("docs", json!({"meta": sent})).await;
        let path = format!(
            "/api/collections/docs/records/{}",
            r["id"].as_str().unwrap()
        );
        assert_eq!(app.get(&path, None).await.1["meta"], v, "read back");
        let u = app.patch(&path, None, json!({"t": "touch"})).await;
        assert_eq!(u.1["meta"], v, "an unrelated update keeps it");
        assert_eq!(app.get(&path, None).await.1["meta"], v, "and it stays");
    }
}

async fn auth_records_hide_secrets(app: TestApp) {
    let (id, tok) = app.user("me@example.com").await;
    let me = app
        .get(&format!("/api/collections/users/records/{id}"), Some(&tok))
        .await;
    assert_eq!(me.1["email"], "me@example.com");
    assert!(me.1.get("password").is_none() && me.1.get("tokenKey").is_none());
    let su_view = app
        .get(&format!("/api/collections/users/records/{id}"), app.su())
        .await;
    assert!(
        su_view.1.get("password").is_none(),
        "password never leaves the server"
    );
}

crate::both!(
    expand_on_lists,
    json_values_round_trip,
    multipart_bodies,
    crud,
    paging_and_sorting,
    expand_and_fields,
    relations_are_checked_and_cleared,
    auth_records_hide_secrets
);
