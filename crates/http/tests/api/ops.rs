//! The operator surface: PocketBase's crons API (the built-in jobs, run one now), a scheduled run
//! claimed by one node, `POST /api/settings/test/s3` against a real S3-compatible server, and a
//! superuser OTP made by the server (the CLI's `superuser otp`).

use serde_json::{json, Value};

use crate::files::{free_port, S3};
use crate::helpers::{assert_error, Backend, TestApp};

async fn crons_list_and_run(app: TestApp) {
    let r = app.get("/api/crons", app.su()).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        r.1,
        json!([
            {"id": "__pbDBOptimize__", "expression": "0 0 * * *"},
            {"id": "__pbMFACleanup__", "expression": "0 * * * *"},
            {"id": "__pbOTPCleanup__", "expression": "0 * * * *"},
            {"id": "__pbLogsCleanup__", "expression": "0 */6 * * *"},
            {"id": "__basaltOutboxPrune__", "expression": "* * * * *"},
        ])
    );
    // The outbox pass runs at once (its loop runs it every prune_ms anyway).
    let r = app
        .post("/api/crons/__basaltOutboxPrune__", app.su(), json!({}))
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    assert_error(&app.get("/api/crons", None).await, 401);
    let (_, user) = app.user("cron@example.com").await;
    assert_error(&app.get("/api/crons", Some(&user)).await, 403);
    assert_error(
        &app.post("/api/crons/__pbDBOptimize__", Some(&user), json!({}))
            .await,
        403,
    );
    let missing = app.post("/api/crons/nope", app.su(), json!({})).await;
    assert_eq!(assert_error(&missing, 404), json!({}));
    assert_eq!(missing.1["message"], "Missing or invalid cron job.");

    // OTP cleanup: an OTP past the collection's duration goes, a fresh one stays.
    let users = app.ctx.collection("users").unwrap();
    let uid = app.ids("users", app.su(), &[]).await[0].clone();
    for (id, age_secs) in [("oldotp000000001", 3600), ("newotp000000001", 5)] {
        let created =
            basalt_core::time::format(chrono::Utc::now() - chrono::Duration::seconds(age_secs));
        let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
        q.push("INSERT INTO _otps (id, \"collectionRef\", \"recordRef\", password, \"sentTo\", created, updated) VALUES (")
            .bind(basalt_core::sql::Value::Text(id.into()))
            .push(", ")
            .bind(basalt_core::sql::Value::Text(users.id.clone()))
            .push(", ")
            .bind(basalt_core::sql::Value::Text(uid.clone()))
            .push(", 'x', '', ")
            .bind(basalt_core::sql::Value::Text(created.clone()))
            .push(", ")
            .bind(basalt_core::sql::Value::Text(created))
            .push(")");
        let mut tx = app.store().begin().await.unwrap();
        tx.execute(&q).await.unwrap();
        tx.commit().await.unwrap();
    }
    for job in [
        "__pbOTPCleanup__",
        "__pbMFACleanup__",
        "__pbLogsCleanup__",
        "__pbDBOptimize__",
    ] {
        let r = app
            .post(&format!("/api/crons/{job}"), app.su(), json!({}))
            .await;
        assert_eq!(r.0, 204, "{job}: {}", r.1);
    }
    let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
    q.push("SELECT id FROM _otps ORDER BY id");
    let left: Vec<String> = app
        .store()
        .query(&q)
        .await
        .unwrap()
        .rows
        .iter()
        .map(|r| r[0].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(left, vec!["newotp000000001".to_string()]);

    // With backups.cron set, the auto backup is a job too; run now, it makes an auto backup.
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"backups": {"cron": "0 3 * * *", "cronMaxKeep": 2}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let list = app.get("/api/crons", app.su()).await.1;
    assert_eq!(
        list[5],
        json!({"id": "__pbAutoBackup__", "expression": "0 3 * * *"})
    );
    let run = app
        .post("/api/crons/__pbAutoBackup__", app.su(), json!({}))
        .await;
    if app.backend == Backend::Sqlite {
        assert_eq!(run.0, 204, "{}", run.1);
        let backups = app.get("/api/backups", app.su()).await.1;
        assert!(
            backups.as_array().unwrap().iter().any(|b| b["key"]
                .as_str()
                .unwrap_or("")
                .starts_with("@auto_pb_backup_")),
            "{backups}"
        );
    } else {
        // PostgreSQL is backed up with its own tooling: the job answers why.
        assert_error(&run, 400);
    }
}

/// A scheduled run is claimed once, whichever node asks first.
async fn a_scheduled_run_is_claimed_once(app: TestApp) {
    let ctx = app.ctx.clone();
    let tries: Vec<_> = (0..8)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                basalt_service::crons::claim(&ctx, "__test__", "202612050101").await
            })
        })
        .collect();
    let mut won = 0;
    for t in tries {
        if t.await.unwrap().unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one claim of a minute wins");
    assert!(
        !basalt_service::crons::claim(&ctx, "__test__", "202612050101")
            .await
            .unwrap()
    );
    assert!(
        basalt_service::crons::claim(&ctx, "__test__", "202612050102")
            .await
            .unwrap(),
        "the next minute is claimed again"
    );
}

async fn settings_test_s3(app: TestApp) {
    let t = |body: Value| {
        let app = &app;
        async move { app.post("/api/settings/test/s3", app.su(), body).await }
    };
    let r = t(json!({})).await;
    assert_eq!(
        assert_error(&r, 400)["filesystem"]["code"],
        "validation_required"
    );
    assert_eq!(r.1["message"], "Failed to test the S3 filesystem.");
    let r = t(json!({"filesystem": "x"})).await;
    assert_eq!(
        assert_error(&r, 400)["filesystem"]["code"],
        "validation_in_invalid"
    );
    let r = t(json!({"filesystem": "storage"})).await;
    assert_error(&r, 400);
    assert_eq!(
        r.1["message"],
        "Failed to test the S3 filesystem. Raw error: \nS3 storage filesystem is not enabled."
    );
    let (_, user) = app.user("s3@example.com").await;
    assert_error(
        &app.post(
            "/api/settings/test/s3",
            Some(&user),
            json!({"filesystem": "storage"}),
        )
        .await,
        403,
    );

    // A real bucket for the backups: the test object is written and deleted.
    let root = std::env::temp_dir().join(format!("basalt-s3t-{}", basalt_core::id::random_id(8)));
    let s3 = S3::start(root.clone(), free_port());
    s3.ready().await;
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"backups": s3.settings()["s3"].clone().as_object().map(|o| {
            let mut o = o.clone();
            o.insert("enabled".into(), json!(true));
            json!({"s3": o})
        }).unwrap()}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = t(json!({"filesystem": "backups"})).await;
    assert_eq!(r.0, 204, "{}", r.1);
    // s3s-fs keeps the emptied folder of a key's prefix; no object is left in it.
    let mut left = vec![];
    for d in std::fs::read_dir(root.join("basalt")).unwrap().flatten() {
        let p = d.path();
        if p.is_dir() {
            left.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else {
            left.push(p);
        }
    }
    assert!(left.is_empty(), "the test object was deleted: {left:?}");
    // Wrong credentials: the storage's error, raw.
    let mut bad = s3.settings()["s3"].clone();
    bad["secret"] = json!("not-the-secret");
    let r = app
        .patch("/api/settings", app.su(), json!({"backups": {"s3": bad}}))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = t(json!({"filesystem": "backups"})).await;
    assert_error(&r, 400);
    assert!(
        r.1["message"].as_str().unwrap().starts_with(
            "Failed to test the S3 filesystem. Raw error: \nfailed to upload a test file"
        ),
        "{}",
        r.1
    );
}

/// `basalt superuser otp`: an OTP the server makes for a superuser signs in (once OTP is allowed).
async fn superuser_otp_from_the_server(app: TestApp) {
    let refused =
        basalt_service::auth::mfa::issue_otp(&app.ctx, "_superusers", "admin@example.com")
            .await
            .unwrap_err();
    assert_eq!(
        refused.0.to_string(),
        "OTP auth is not enabled for the _superusers collection"
    );
    let r = app
        .patch(
            "/api/collections/_superusers",
            app.su(),
            json!({"otp": {"enabled": true, "length": 8}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let (id, code) =
        basalt_service::auth::mfa::issue_otp(&app.ctx, "_superusers", "admin@example.com")
            .await
            .unwrap();
    assert_eq!(code.len(), 8);
    let r = app
        .post(
            "/api/collections/_superusers/auth-with-otp",
            None,
            json!({"otpId": id, "password": code}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["record"]["email"], "admin@example.com");
}

crate::both!(
    crons_list_and_run,
    a_scheduled_run_is_claimed_once,
    settings_test_s3,
    superuser_otp_from_the_server
);

/// `--public-dir`: files at `/`, `index.html` for folders and (with the fallback) for paths without a
/// file, never a listing, never outside the folder, and the API's own 404 under `/api/`.
async fn static_files(backend: Backend) {
    let dir = std::env::temp_dir().join(format!("basalt-public-{}", basalt_core::id::random_id(8)));
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>app</h1>").unwrap();
    std::fs::write(dir.join("app.js"), "console.log(1)").unwrap();
    std::fs::write(dir.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    let spawn = |fallback: bool| {
        let dir = dir.clone();
        async move {
            crate::helpers::spawn_app_with(
                backend,
                basalt_http::Options {
                    public_dir: Some(dir),
                    index_fallback: fallback,
                    ..Default::default()
                },
            )
            .await
        }
    };
    let app = spawn(true).await;
    let get = |path: &str, h: Option<(&str, String)>| {
        let mut rb = app.client.get(format!("{}{path}", app.url));
        if let Some((k, v)) = h {
            rb = rb.header(k, v);
        }
        async move { rb.send().await.unwrap() }
    };
    let r = get("/", None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let modified = r.headers()["last-modified"].to_str().unwrap().to_string();
    assert_eq!(r.text().await.unwrap(), "<h1>app</h1>");
    let js = get("/app.js", None).await;
    assert_eq!(js.status(), 200);
    assert_eq!(js.headers()["cache-control"], "public, max-age=3600");
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let again = get("/", Some(("if-modified-since", modified))).await;
    assert_eq!(again.status(), 304);
    assert_eq!(
        get("/docs/", None).await.text().await.unwrap(),
        "<h1>docs</h1>"
    );
    // A single-page app's route, and a folder without index.html: the app's index, no listing.
    for p in ["/settings/profile", "/empty/"] {
        let r = get(p, None).await;
        assert_eq!(r.status(), 200, "{p}");
        assert_eq!(r.text().await.unwrap(), "<h1>app</h1>", "{p}");
    }
    // Nothing outside the folder.
    let secret = dir.parent().unwrap().join(format!(
        "{}-secret.txt",
        dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&secret, "secret").unwrap();
    let name = secret.file_name().unwrap().to_string_lossy().to_string();
    for p in [
        format!("/../{name}"),
        format!("/%2e%2e/{name}"),
        format!("/..%2f{name}"),
    ] {
        let body = get(&p, None).await.text().await.unwrap();
        assert!(!body.contains("secret"), "{p}: {body}");
    }
    let _ = std::fs::remove_file(&secret);
    // The API keeps its own answers.
    let api = get("/api/nope", None).await;
    assert_eq!(api.status(), 404);
    assert_eq!(
        api.json::<Value>().await.unwrap()["message"],
        "File not found."
    );
    assert_eq!(get("/api/health", None).await.status(), 200);
    let post = app
        .client
        .post(format!("{}/index.html", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 404);

    // Without the fallback a missing path is a 404.
    let app = spawn(false).await;
    let r = app
        .client
        .get(format!("{}/settings/profile", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let _ = std::fs::remove_dir_all(&dir);
}

mod public {
    crate::both_backends!(static_files);
    use super::static_files;
}

/// The dashboard at `/_/`: the embedded `ui/dist` page with a strict CSP, revalidated (ETag → 304),
/// its hashed assets cached for good and gzipped for clients that accept it, the app's routes by
/// `#/…` (an unknown file is the protocol's 404), and the OAuth2 redirect landing on its page.
#[tokio::test]
async fn dashboard_is_served_from_the_binary() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let get = |path: &str, h: Vec<(&'static str, String)>| {
        let mut rb = app.client.get(format!("{}{path}", app.url));
        for (k, v) in h {
            rb = rb.header(k, v);
        }
        async move { rb.send().await.unwrap() }
    };
    let r = get("/_/", vec![]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let html = r.text().await.unwrap();
    assert!(html.contains("<div id=\"app\">"), "{html}");
    assert_eq!(
        get("/_/", vec![("if-none-match", etag)]).await.status(),
        304
    );

    // The script the page loads: immutable, and gzipped on request (smaller, same bytes unpacked).
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a script tag")
        .to_string();
    assert!(
        script.starts_with("/_/assets/") && script.ends_with(".js"),
        "{script}"
    );
    let plain = get(&script, vec![]).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(
        plain.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(plain.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let plain = plain.bytes().await.unwrap();
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let gz = raw
        .get(format!("{}{script}", app.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let gz = gz.bytes().await.unwrap();
    assert!(
        gz.len() * 2 < plain.len(),
        "{} vs {}",
        gz.len(),
        plain.len()
    );

    let missing = get("/_/assets/nope.js", vec![]).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["message"],
        "File not found."
    );

    // A provider's redirect without a waiting client lands on the dashboard's failure page, which
    // the dashboard serves.
    let manual = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = manual
        .get(format!(
            "{}/api/oauth2-redirect?state=nobody&code=x",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"],
        "../_/#/auth/oauth2-redirect-failure"
    );
}

/// A data directory from before request logs were batched keeps them in `auxiliary.db` (one row
/// per entry): the first start moves them into `logs.db`, where the logs API reads them as before,
/// and removes the old file. A start that finds the move recorded but the file still there (a
/// crash between the two) only removes the file: nothing is moved twice.
#[tokio::test]
async fn request_logs_left_in_auxiliary_db_are_moved() {
    let dir = crate::helpers::TempDir(
        std::env::temp_dir().join(format!("basalt-logs-{}", basalt_core::id::random_id(8))),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let recent = basalt_core::time::format(chrono::Utc::now() - chrono::Duration::hours(2));
    write_legacy_logs(&dir.0, &[
        (
            "zzzzzzzzzzzzzz1",
            &recent,
            0,
            "GET /api/health",
            r#"{"type":"request","method":"GET","url":"/api/health","status":200,"execTime":0.25,"auth":"","userAgent":"old \"agent\""}"#,
        ),
        (
            "aaaaaaaaaaaaaa2",
            &recent,
            8,
            "POST /api/collections/x/records",
            r#"{"type":"request","status":400,"error":"Failed to create record.","details":{"title":{"code":"validation_required","n":[1,2.5,null,true]}}}"#,
        ),
    ], 8_200) // more than one batch of the move, all with the same (created, seq)
    .await;
    let opts = basalt_http::Options {
        data_dir: Some(dir.0.clone()),
        ..Default::default()
    };
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, opts.clone()).await;
    assert!(dir.0.join("logs.db").exists());
    for f in ["auxiliary.db", "auxiliary.db-wal", "auxiliary.db-shm"] {
        assert!(!dir.0.join(f).exists(), "{f} is removed");
    }
    let list = app
        .get(
            "/api/logs?filter=(data.type%3D'request'%26%26created%3C'2100-01-01')&sort=-level",
            app.su(),
        )
        .await;
    assert_eq!(list.0, 200, "{}", list.1);
    let items = list.1["items"].as_array().cloned().unwrap_or_default();
    let old: Vec<&Value> = items
        .iter()
        .filter(|i| i["id"] == "zzzzzzzzzzzzzz1" || i["id"] == "aaaaaaaaaaaaaa2")
        .collect();
    assert_eq!(old.len(), 2, "{}", list.1);
    assert_eq!(
        old[0]["id"], "aaaaaaaaaaaaaa2",
        "sorted by level, highest first"
    );
    assert_eq!(
        old[0]["data"]["details"],
        json!({"title": {"code": "validation_required", "n": [1, 2.5, null, true]}})
    );
    assert_eq!(old[0]["created"], json!(recent));
    assert_eq!(old[1]["message"], "GET /api/health");
    assert_eq!(old[1]["data"]["userAgent"], "old \"agent\"");
    assert_eq!(old[1]["data"]["execTime"], 0.25);
    // One entry by id: an id that does not sort by time (PocketBase's) is found as well.
    let one = app.get("/api/logs/zzzzzzzzzzzzzz1", app.su()).await;
    assert_eq!(one.0, 200, "{}", one.1);
    assert_eq!(one.1["level"], 0);
    let errors = app
        .get(
            "/api/logs?filter=level%3E0%26%26data.status%3D400",
            app.su(),
        )
        .await;
    assert_eq!(errors.1["totalItems"], 1, "{}", errors.1);
    let filler = app
        .get(
            "/api/logs?perPage=1&filter=message%3D'GET%20/fill'",
            app.su(),
        )
        .await;
    assert_eq!(
        filler.1["totalItems"], 8_200,
        "every row moved once: {}",
        filler.1
    );
    drop(app);

    // The move is recorded: the same file found again is only removed.
    write_legacy_logs(
        &dir.0,
        &[("bbbbbbbbbbbbbb3", &recent, 0, "GET /again", "{}")],
        0,
    )
    .await;
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, opts).await;
    assert!(!dir.0.join("auxiliary.db").exists());
    assert_error(&app.get("/api/logs/bbbbbbbbbbbbbb3", app.su()).await, 404);
    let again = app.get("/api/logs/aaaaaaaaaaaaaa2", app.su()).await;
    assert_eq!(again.0, 200, "{}", again.1);
    let twice = app
        .get("/api/logs?filter=id%3D'aaaaaaaaaaaaaa2'", app.su())
        .await;
    assert_eq!(twice.1["totalItems"], 1, "moved once: {}", twice.1);
}

/// `_logs` rows in `dir/auxiliary.db` as versions before the batched logs wrote them, and `filler`
/// more that share one `created` and one `seq` (as imported entries could).
async fn write_legacy_logs(
    dir: &std::path::Path,
    rows: &[(&str, &str, i64, &str, &str)],
    filler: usize,
) {
    use basalt_core::sql::{Dialect, Sql, Value as V};
    let old = basalt_store::sqlite::SqliteStore::open(&dir.join("auxiliary.db")).unwrap();
    let mut tx = basalt_store::Store::begin(&old).await.unwrap();
    let mut q = Sql::new(Dialect::Sqlite);
    q.push(
        "CREATE TABLE IF NOT EXISTS \"_logs\" (\"id\" TEXT PRIMARY KEY NOT NULL, \"created\" TEXT NOT NULL, \
         \"level\" INTEGER NOT NULL DEFAULT 0, \"message\" TEXT NOT NULL DEFAULT '', \"data\" TEXT, \
         \"seq\" INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
    );
    tx.execute(&q).await.unwrap();
    for (i, (id, created, level, message, data)) in rows.iter().enumerate() {
        let mut q = Sql::new(Dialect::Sqlite);
        q.push("INSERT INTO \"_logs\" VALUES (")
            .bind(V::Text(id.to_string()))
            .push(", ")
            .bind(V::Text(created.to_string()))
            .push(", ")
            .bind(V::Int(*level))
            .push(", ")
            .bind(V::Text(message.to_string()))
            .push(", ")
            .bind(V::Text(data.to_string()))
            .push(", ")
            .bind(V::Int(i as i64))
            .push(")");
        tx.execute(&q).await.unwrap();
    }
    let mut q = Sql::new(Dialect::Sqlite);
    q.push("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ")
        .bind(V::Int(filler as i64))
        .push(") INSERT INTO \"_logs\" SELECT printf('fill%011d', i), ")
        .bind(V::Text(basalt_core::time::format(
            chrono::Utc::now() - chrono::Duration::hours(1),
        )))
        .push(", 0, 'GET /fill', '{}', 0 FROM n WHERE ")
        .bind(V::Int(filler as i64))
        .push(" > 0");
    tx.execute(&q).await.unwrap();
    tx.commit().await.unwrap();
}
