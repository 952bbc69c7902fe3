//! Bad input gets a clear 4xx in the protocol's shape, never a 500, and changes nothing.

use serde_json::json;

use crate::helpers::{assert_error, TestApp};

async fn setup(app: &TestApp) {
    app.collection(json!({"name": "things", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "fields": [
        {"name": "name", "type": "text", "max": 20},
        {"name": "n", "type": "number", "onlyInt": true},
        {"name": "data", "type": "json"}
    ]}))
    .await;
    app.record("things", json!({"name": "one", "n": 1})).await;
}

async fn malformed_bodies(app: TestApp) {
    setup(&app).await;
    for body in [&b"{not json"[..], b"[1,2,3]", b"\"str\"", b"{\"name\": "] {
        let r = app
            .raw(
                reqwest::Method::POST,
                "/api/collections/things/records",
                None,
                "application/json",
                body.to_vec(),
            )
            .await;
        assert_error(&r, 400);
    }
    let r = app
        .post(
            "/api/collections/things/records",
            None,
            json!({"name": {"nested": true}}),
        )
        .await;
    assert!(assert_error(&r, 400)["name"].is_object());
    let r = app
        .post("/api/collections/things/records", None, json!({"n": 1.5}))
        .await;
    assert_eq!(
        assert_error(&r, 400)["n"]["code"],
        "validation_only_int_constraint"
    );
    let r = app
        .post(
            "/api/collections/things/records",
            None,
            json!({"name": "x".repeat(21)}),
        )
        .await;
    assert_eq!(
        assert_error(&r, 400)["name"]["code"],
        "validation_max_text_constraint"
    );
}

async fn oversized_body(app: TestApp) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    setup(&app).await;
    // Announce a body over the 32 MiB limit: the server answers 413 without reading it.
    let addr = app.url.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/collections/things/records HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"name\":\"",
        (33 << 20) + 12
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.contains("\"status\":413"),
        "protocol error shape: {text}"
    );
    assert_eq!(
        app.get("/api/health", None).await.0,
        200,
        "the server stays up"
    );
    assert_eq!(
        app.ids("things", None, &[]).await.len(),
        1,
        "nothing was written"
    );
}

async fn injection_attempts(app: TestApp) {
    setup(&app).await;
    let filters = [
        "name = 'x' OR 1=1",
        "name = 'x'; DROP TABLE things; --",
        "name = \"' OR '1'='1\"",
        "\"things\".name = 1",
        "name ~ '%' || 1",
        "id = (SELECT 1)",
        "name = 'a' && (((((((((((((((((((((((((((((((((((((( name = 'b'",
        "name.x.y.z = 1",
        "@collection.things; = 1",
        "name = @now)",
        "sqlite_master.name != ''",
        "name = '\u{0}'",
    ];
    for f in filters {
        let r = app
            .get_q("/api/collections/things/records", None, &[("filter", f)])
            .await;
        assert!(
            r.0 == 400
                || r.0 == 403
                || (r.0 == 200 && r.1["items"].as_array().is_some_and(|a| a.is_empty())),
            "filter {f:?}: {} {}",
            r.0,
            r.1
        );
        if r.0 != 200 {
            assert_error(&r, r.0);
        }
    }
    // a value that looks like SQL is just a value
    let r = app
        .get_q(
            "/api/collections/things/records",
            None,
            &[("filter", "name = \"one' OR '1'='1\"")],
        )
        .await;
    assert_eq!(r.1["items"], json!([]));
    for s in [
        "name;drop",
        "-(name)",
        "name desc",
        "1",
        "@nope",
        "a,b,c,d,e,f,g,h,i",
    ] {
        assert_error(
            &app.get_q("/api/collections/things/records", None, &[("sort", s)])
                .await,
            400,
        );
    }
    for f in ["*; DROP", "name) --"] {
        let r = app
            .get_q("/api/collections/things/records", None, &[("fields", f)])
            .await;
        assert_eq!(r.0, 200, "fields never reach SQL: {}", r.1);
    }
    for name in ["things;drop", "things\"--", "../etc", "%27"] {
        let r = app
            .get(
                &format!("/api/collections/{}/records", urlencode(name)),
                None,
            )
            .await;
        assert_error(&r, 404);
    }
    let r = app
        .post(
            "/api/collections",
            app.su(),
            json!({"name": "x\"; DROP TABLE things; --", "fields": []}),
        )
        .await;
    assert_eq!(
        assert_error(&r, 400)["name"]["code"],
        "validation_match_invalid"
    );
    let r = app.post("/api/collections", app.su(), json!({"name": "okname", "fields": [{"name": "a\" TEXT); DROP TABLE things; --", "type": "text"}]})).await;
    assert_error(&r, 400);
    let r = app.post("/api/collections", app.su(), json!({"name": "okname2", "indexes": ["CREATE INDEX i ON okname2 (id); DROP TABLE things"]})).await;
    assert_error(&r, 400);
    // still there, still one row
    assert_eq!(app.ids("things", None, &[]).await.len(), 1);
}

async fn invalid_ids_and_params(app: TestApp) {
    setup(&app).await;
    assert_error(
        &app.get("/api/collections/things/records/nope", None).await,
        404,
    );
    assert_error(
        &app.get("/api/collections/things/records/..%2F..", None)
            .await,
        404,
    );
    let r = app
        .post(
            "/api/collections/things/records",
            None,
            json!({"id": "short"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, 400)["id"]["code"],
        "validation_min_text_constraint"
    );
    let r = app
        .post(
            "/api/collections/things/records",
            None,
            json!({"id": "UPPERCASE_ID_12"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, 400)["id"]["code"],
        "validation_invalid_format"
    );
    assert_error(
        &app.get_q("/api/collections/things/records", None, &[("page", "abc")])
            .await,
        400,
    );
    let r = app
        .get_q(
            "/api/collections/things/records",
            None,
            &[("perPage", "99999999")],
        )
        .await;
    assert_eq!(r.1["perPage"], 1000);
    let long = "name = 'x' && ".repeat(300) + "name = 'x'";
    assert_error(
        &app.get_q(
            "/api/collections/things/records",
            None,
            &[("filter", long.as_str())],
        )
        .await,
        400,
    );
    assert_error(&app.get("/api/nope", None).await, 404);
    // NUL never reaches a database (Postgres cannot store it): a clear 400 on both backends.
    assert_error(
        &app.get("/api/collections/things/records/%00", None).await,
        400,
    );
    let r = app
        .get_q(
            "/api/collections/things/records",
            None,
            &[("page", "9223372036854775807")],
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["items"], json!([]));
    let r = app
        .get_q(
            "/api/collections/things/records",
            None,
            &[("filter", "name ~ '%\\'")],
        )
        .await;
    assert!(r.0 == 200 || r.0 == 400, "{} {}", r.0, r.1);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

crate::both!(
    malformed_bodies,
    oversized_body,
    injection_attempts,
    invalid_ids_and_params
);
