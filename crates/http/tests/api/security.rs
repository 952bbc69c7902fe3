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
    let all = app.get("/api/collections/wallets/records", Some(&ta)).await;
    assert_eq!(all.1["totalItems"], json!(1), "{}", all.1);
}

/// Seeds `authors` (one row) and `posts` (`n` rows by that author), both listable by guests.
async fn seed_posts(app: &TestApp, n: usize) {
    app.collection(json!({"name": "authors", "listRule": "", "viewRule": "",
        "fields": [{"name": "name", "type": "text"}]}))
        .await;
    let authors = app.get("/api/collections/authors", app.su()).await;
    app.collection(json!({"name": "posts", "listRule": "", "viewRule": "",
    "fields": [
        {"name": "body", "type": "text"},
        {"name": "author", "type": "relation", "collectionId": authors.1["id"], "maxSelect": 1}
    ]}))
    .await;
    let author = "a00000000000001";
    let store = app.store();
    let mut tx = store.begin().await.unwrap();
    let mut s = basalt_core::sql::Sql::new(store.dialect());
    s.push("INSERT INTO \"authors\" (\"id\", \"name\") VALUES (")
        .bind(basalt_core::sql::Value::Text(author.into()))
        .push(", 'a')");
    tx.execute(&s).await.unwrap();
    for i in 0..n {
        let mut s = basalt_core::sql::Sql::new(store.dialect());
        s.push("INSERT INTO \"posts\" (\"id\", \"body\", \"author\") VALUES (")
            .bind(basalt_core::sql::Value::Text(format!("p{i:014}")))
            .push(", ")
            .bind(basalt_core::sql::Value::Text(format!(
                "some body text number {i} {}",
                "lorem ipsum ".repeat(8)
            )))
            .push(", ")
            .bind(basalt_core::sql::Value::Text(author.into()))
            .push(")");
        tx.execute(&s).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// `n` terms `path ~ "zz<i>"` joined with `||`.
fn ors(n: usize, path: &str, op: &str) -> String {
    (0..n)
        .map(|i| format!("{path} {op} \"zz{i}\""))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// The attack's filter (50 OR'd paths through two back-relations each) is refused before it runs, and
/// expensive filters within the bound cannot starve the node: while eight guests run them, health
/// and readiness answer at once and a signed-in user's read is served.
async fn expensive_filters_cannot_stall_the_node(app: TestApp) {
    seed_posts(&app, 4000).await;
    let attack = ors(
        50,
        "author.posts_via_author.author.posts_via_author.body",
        "?~",
    );
    let r = app
        .get_q(
            "/api/collections/posts/records",
            None,
            &[("filter", &attack)],
        )
        .await;
    let e = assert_error(&r, 400);
    assert_eq!(
        e["filter"]["code"], "validation_too_expensive",
        "the refusal names the bound: {e}"
    );
    let short = ors(7, "author.posts_via_author.body", "~");
    let r = app
        .get_q(
            "/api/collections/posts/records",
            None,
            &[("filter", &short), ("perPage", "1")],
        )
        .await;
    assert_eq!(
        r.0, 400,
        "7 back-relations are past the client bound: {}",
        r.1
    );

    // Within the bound (6 back-relations) but expensive: each read scans posts × posts.
    let heavy = ors(6, "author.posts_via_author.body", "~");
    let (uid, token) = app.user("reader@example.com").await;
    let mut guests = Vec::new();
    for _ in 0..8 {
        let (c, url, f) = (app.client.clone(), app.url.clone(), heavy.clone());
        guests.push(tokio::spawn(async move {
            let t = std::time::Instant::now();
            let r = c
                .get(format!("{url}/api/collections/posts/records"))
                .query(&[("filter", f.as_str()), ("skipTotal", "1")])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), t.elapsed())
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut health = Vec::new();
    for _ in 0..10 {
        let t = std::time::Instant::now();
        let r = app.get("/api/health", None).await;
        assert_eq!(r.0, 200);
        let r = app.get("/readyz", None).await;
        assert_eq!(r.0, 200, "ready while guests read: {}", r.1);
        health.push(t.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A signed-in user's own read is not queued behind the guests' (they hold at most half the
    // read connections).
    let t = std::time::Instant::now();
    let me = app
        .get(
            &format!("/api/collections/users/records/{uid}"),
            Some(&token),
        )
        .await;
    assert_eq!(me.0, 200, "{}", me.1);
    let user_read = t.elapsed();
    let mut outcomes = Vec::new();
    for g in guests {
        outcomes.push(g.await.unwrap());
    }
    health.sort();
    let median = health[health.len() / 2];
    eprintln!("health+readyz while 8 heavy guest reads run: median {median:?}, max {:?}; user read {user_read:?}; guests {outcomes:?}", health[health.len() - 1]);
    assert!(
        median < std::time::Duration::from_millis(100),
        "health and readiness answer at once, not behind user queries: {health:?}"
    );
    assert!(
        health[health.len() - 1] < std::time::Duration::from_secs(1),
        "no probe waits for a read: {health:?}"
    );
    assert!(
        user_read < std::time::Duration::from_secs(1),
        "a user's read is served while guests run heavy reads: {user_read:?}"
    );
    // Every heavy read ends with an answer: its result, its deadline (400), or its turn refused (429).
    for (status, _) in &outcomes {
        assert!(
            [200, 400, 429].contains(status),
            "heavy reads end cleanly: {outcomes:?}"
        );
    }
}

/// Client addresses come from `X-Real-IP` (a trusted proxy header), so one test plays many networks.
async fn trust_proxy_header(app: &TestApp) {
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"trustedProxy": {"headers": ["X-Real-IP"]}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
}

async fn sign_in_from(app: &TestApp, coll: &str, identity: &str, pw: &str, ip: &str) -> u16 {
    app.send_with(
        app.client
            .post(format!(
                "{}/api/collections/{coll}/auth-with-password",
                app.url
            ))
            .header("X-Real-IP", ip)
            .json(&json!({"identity": identity, "password": pw})),
    )
    .await
    .0
}

/// Wrong passwords lock the (identity, network) pair, not the account: an attacker locks only
/// themselves, the owner (a user or a superuser) still signs in from elsewhere. Guessing from many
/// networks slows unknown networks to one try per interval; the owner's known network is not slowed.
async fn lockout_locks_the_guesser_not_the_account(app: TestApp) {
    trust_proxy_header(&app).await;
    app.user("victim@example.com").await;
    for (coll, who, pw) in [
        ("users", "victim@example.com", "password123"),
        ("_superusers", "admin@example.com", "password123"),
    ] {
        assert_eq!(sign_in_from(&app, coll, who, pw, "198.51.100.7").await, 200);
        for _ in 0..5 {
            assert_eq!(
                sign_in_from(&app, coll, who, "wrong-pass", "203.0.113.5").await,
                400
            );
        }
        assert_eq!(
            sign_in_from(&app, coll, who, pw, "203.0.113.5").await,
            429,
            "the guessing network is locked for {who}"
        );
        assert_eq!(
            sign_in_from(&app, coll, who, pw, "198.51.100.7").await,
            200,
            "{who} still signs in from their own network"
        );
        assert_eq!(
            sign_in_from(&app, coll, who, pw, "192.0.2.44").await,
            200,
            "{who} signs in from a new network too"
        );
    }
    // Distributed guessing of another account: one wrong try from each of 20 networks.
    app.user("spread@example.com").await;
    let who = "spread@example.com";
    assert_eq!(
        sign_in_from(&app, "users", who, "password123", "198.51.100.8").await,
        200
    );
    for n in 0..20 {
        let ip = format!("10.9.{n}.1");
        assert_eq!(
            sign_in_from(&app, "users", who, "wrong-pass", &ip).await,
            400
        );
    }
    // Now unknown networks share one try per interval: the first goes through, the next waits;
    // the owner's network (signed in from before) is not slowed.
    for (pw, ip, want) in [
        ("wrong-pass", "10.10.0.1", 400),
        ("password123", "10.10.0.2", 429),
        ("password123", "198.51.100.8", 200),
        ("password123", "198.51.100.8", 200),
    ] {
        assert_eq!(sign_in_from(&app, "users", who, pw, ip).await, want, "{ip}");
    }
}

/// Guessing a user's OTP from one network uses up that network's tries, not the owner's.
async fn otp_tries_are_per_network(app: TestApp) {
    let smtp = crate::servers::Smtp::start().await;
    crate::servers::use_smtp(&app, &smtp).await;
    trust_proxy_header(&app).await;
    app.user("otp-victim@example.com").await;
    let r = app
        .patch(
            "/api/collections/users",
            app.su(),
            json!({"otp": {"enabled": true, "length": 6}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let otp = |ip: &'static str, otp_id: String, code: String| {
        let app = &app;
        async move {
            app.send_with(
                app.client
                    .post(format!("{}/api/collections/users/auth-with-otp", app.url))
                    .header("X-Real-IP", ip)
                    .json(&json!({"otpId": otp_id, "password": code})),
            )
            .await
            .0
        }
    };
    // The attacker asks for an OTP for the victim and guesses until refused.
    let r = app
        .post(
            "/api/collections/users/request-otp",
            None,
            json!({"email": "otp-victim@example.com"}),
        )
        .await;
    let attacker_otp = r.1["otpId"].as_str().unwrap().to_string();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(otp("203.0.113.9", attacker_otp.clone(), "000000".into()).await);
    }
    assert_eq!(
        statuses,
        vec![400, 400, 400, 400, 400, 429],
        "the guesser runs out of tries"
    );
    // The owner asks for a new OTP and signs in with it from their own network.
    let r = app
        .post(
            "/api/collections/users/request-otp",
            None,
            json!({"email": "otp-victim@example.com"}),
        )
        .await;
    let owner_otp = r.1["otpId"].as_str().unwrap().to_string();
    let mail = smtp
        .wait_nth("otp-victim@example.com", "one-time password", 2)
        .await;
    let code = crate::authflows::otp_code(&mail, 6);
    assert_eq!(
        otp("198.51.100.7", owner_otp, code).await,
        200,
        "the owner is not locked out"
    );
}

/// A known identity with a wrong password and an unknown identity do the same hashing work: their
/// median answer times are within 40% (30 tries each, interleaved, each from its own network so no
/// lockout applies). Skipping the hash for an unknown identity would make it about ten times faster
/// (argon2 is nearly all of a failed sign-in); the known path's extra record load, under the whole
/// suite's load on the database, has moved one side by up to 35%.
async fn sign_in_timing_does_not_reveal_accounts(app: TestApp) {
    trust_proxy_header(&app).await;
    // Three accounts per round, so no account passes the all-networks failure threshold.
    for k in 0..9 {
        app.user(&format!("timing{k}@example.com")).await;
    }
    // Warm up (the dummy hash is made on first use).
    sign_in_from(
        &app,
        "users",
        "nobody@example.com",
        "wrong-pass",
        "10.20.0.1",
    )
    .await;
    // The suite runs tests in parallel on few cores: a burst of other work can skew one round's
    // medians, so up to three rounds are measured and one within 40% passes. A real difference
    // (skipping the hash saves the whole argon2 time) fails every round. The SQLite and PostgreSQL
    // runs of this test measure one at a time: run together, their alternating known/unknown
    // sign-ins fell into step and skewed every round of one of them by ~30%, either way.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut rounds = Vec::new();
    for round in 0..3 {
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for i in 0..30 {
            for (list, who, host) in [
                (
                    &mut known,
                    format!("timing{}@example.com", round * 3 + i % 3),
                    1,
                ),
                (&mut unknown, format!("nobody{round}x{i}@example.com"), 2),
            ] {
                let ip = format!("10.{}.{i}.{host}", 21 + round);
                let t = std::time::Instant::now();
                assert_eq!(
                    sign_in_from(&app, "users", &who, "wrong-pass", &ip).await,
                    400
                );
                list.push(t.elapsed());
            }
        }
        known.sort();
        unknown.sort();
        let (a, b) = (known[15].as_secs_f64(), unknown[15].as_secs_f64());
        eprintln!(
            "sign-in medians: known email {:.1} ms, unknown email {:.1} ms",
            a * 1e3,
            b * 1e3
        );
        if (a - b).abs() <= 0.4 * a.max(b) {
            return;
        }
        rounds.push(format!("known {a:.4}s vs unknown {b:.4}s"));
    }
    panic!(
        "timing tells whether an email exists in every round: {}",
        rounds.join("; ")
    );
}

/// A read that never ends is stopped at the read deadline (`READ_TIMEOUT_MS`, 5 s) with
/// `StoreError::Timeout`, on SQLite (interrupted; it first runs inline for 5 ms, then on the blocking
/// pool) and on PostgreSQL (cancelled on the server); the node answers meanwhile and the store works
/// after.
async fn endless_reads_stop_at_the_deadline(app: TestApp) {
    let store = app.store();
    let mut q = basalt_core::sql::Sql::new(store.dialect());
    q.push(match store.dialect() {
        basalt_core::sql::Dialect::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        }
        basalt_core::sql::Dialect::Postgres => "SELECT pg_sleep(30)",
    });
    let t = std::time::Instant::now();
    let read = tokio::spawn(async move { store.query(&q).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let h = std::time::Instant::now();
    assert_eq!(app.get("/readyz", None).await.0, 200);
    assert!(
        h.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        h.elapsed()
    );
    let r = read.await.unwrap();
    let took = t.elapsed();
    assert!(
        matches!(r, Err(basalt_store::StoreError::Timeout)),
        "stopped with Timeout: {r:?}"
    );
    assert!(
        took >= std::time::Duration::from_millis(4500) && took < std::time::Duration::from_secs(12),
        "at the deadline: {took:?}"
    );
    assert_eq!(
        app.get("/api/collections/users/records", app.su()).await.0,
        200
    );
}

/// A loopback listener that counts the connections it accepts (and answers nothing useful).
async fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    (port, n)
}

/// Under the default egress policy (no allow-list for loopback), webhooks and OIDC discovery
/// cannot reach internal addresses: IP literals are refused when saved, host names resolving to
/// loopback are refused at connect time, and nothing ever connects to the internal listener.
async fn egress_policy_keeps_outbound_requests_public(backend: crate::helpers::Backend) {
    let opts = basalt_http::Options {
        // An allow-list that does not cover loopback: the default policy applies to 127.0.0.1.
        egress: basalt_events::egress::EgressConfig {
            allow: vec!["192.0.2.0/24".into()],
        },
        ..Default::default()
    };
    let app = crate::helpers::spawn_app_with(backend, opts).await;
    let (port, hits) = counting_listener().await;
    app.collection(json!({"name": "notes", "fields": [{"name": "t", "type": "text"}]}))
        .await;
    for url in [
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        "http://10.0.0.5/hook".to_string(),
    ] {
        let r = app
            .post(
                "/api/webhooks",
                app.su(),
                json!({"url": url, "secret": "0123456789abcdef0123", "collection": "notes", "events": ["create"]}),
            )
            .await;
        let e = assert_error(&r, 400);
        assert!(
            e["url"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("egress policy"),
            "{url}: {e}"
        );
    }
    // A host name is checked on the address it resolves to, when connecting.
    let r = app
        .post(
            "/api/webhooks",
            app.su(),
            json!({"url": format!("http://localhost:{port}/hook"), "secret": "0123456789abcdef0123",
                   "collection": "notes", "events": ["create"], "maxAttempts": 1}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    app.post(
        "/api/collections/notes/records",
        app.su(),
        json!({"t": "x"}),
    )
    .await;
    let mut dead = json!(null);
    for _ in 0..100 {
        let d = app
            .get("/api/webhooks/deliveries?status=dead", app.su())
            .await;
        if d.1["totalItems"].as_i64().unwrap_or(0) > 0 {
            dead = d.1;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        dead["items"][0]["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("egress policy"),
        "the delivery failed on the policy: {dead}"
    );
    // OIDC discovery on an internal issuer, triggered by an anonymous auth-methods call.
    for issuer in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let r = app
            .patch(
                "/api/collections/users",
                app.su(),
                json!({"oauth2": {"enabled": true, "providers": [
                    {"name": "oidc", "clientId": "c", "clientSecret": "s", "extra": {"issuer": issuer}}
                ]}}),
            )
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
        let m = app.get("/api/collections/users/auth-methods", None).await;
        assert_eq!(m.0, 200, "{}", m.1);
        assert_eq!(m.1["oauth2"]["providers"], json!([]), "{issuer}: {}", m.1);
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing connected to the internal listener"
    );
}

/// Informational findings: impersonation tokens are bounded, JSON and HTML answers carry the
/// anti-sniffing, referrer and anti-framing headers.
async fn impersonation_is_bounded_and_headers_are_sent(app: TestApp) {
    let (id, _) = app.user("imp@example.com").await;
    let path = format!("/api/collections/users/impersonate/{id}");
    let r = app
        .post(&path, app.su(), json!({"duration": 1_000_000_000_000i64}))
        .await;
    let e = assert_error(&r, 400);
    assert_eq!(
        e["duration"]["code"], "validation_max_less_equal_than_required",
        "{e}"
    );
    let r = app.post(&path, app.su(), json!({"duration": 3600})).await;
    assert_eq!(r.0, 200, "{}", r.1);
    for path in ["/api/health", "/api/collections/users/records", "/api/nope"] {
        let r = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(
            h["content-security-policy"], "frame-ancestors 'none'",
            "{path}"
        );
    }
}

/// A backup whose entries conflict (a file and a folder of the same name) is refused with a
/// message of ours; the OS error (`File exists (os error 17)`) stays in the server log.
async fn restore_errors_do_not_echo_os_errors(app: TestApp) {
    use std::io::Write;
    let dir = app.ctx.files.data_dir.join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    let f = std::fs::File::create(dir.join("evil.zip")).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let o = zip::write::SimpleFileOptions::default();
    z.start_file("storage/a", o).unwrap();
    z.write_all(b"x").unwrap();
    z.start_file("storage/a/b", o).unwrap();
    z.write_all(b"y").unwrap();
    z.start_file("data.db", o).unwrap();
    z.write_all(b"not a database").unwrap();
    z.finish().unwrap();
    let r = app
        .post("/api/backups/evil.zip/restore", app.su(), json!({}))
        .await;
    assert_error(&r, 400);
    let m = r.1["message"].as_str().unwrap();
    assert!(!m.contains("os error") && !m.contains("File exists"), "{m}");
    assert!(m.contains("cannot be extracted"), "{m}");
    assert_eq!(app.get("/api/health", None).await.0, 200);
}

mod sqlite_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restore_errors_do_not_echo_os_errors() {
        super::restore_errors_do_not_echo_os_errors(
            crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await,
        )
        .await
    }
}

mod egress {
    use super::egress_policy_keeps_outbound_requests_public;
    crate::both_backends!(egress_policy_keeps_outbound_requests_public);
}

crate::both!(
    modifiers_cannot_bypass_body_rules,
    expensive_filters_cannot_stall_the_node,
    lockout_locks_the_guesser_not_the_account,
    otp_tries_are_per_network,
    sign_in_timing_does_not_reveal_accounts,
    impersonation_is_bounded_and_headers_are_sent,
    endless_reads_stop_at_the_deadline,
);
