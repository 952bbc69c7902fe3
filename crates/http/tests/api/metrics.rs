//! `/metrics`: what a scrape shows after known traffic (exact counts per route template, record
//! outcomes, sign-ins, store, realtime), who may scrape, and `X-Request-Id`.

use serde_json::json;

use crate::helpers::{spawn_app, Backend};

/// The value of the sample `name{labels…}` (every given label must match), if present.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (lbls, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (l, v) = r.split_once("} ")?;
                (l, v)
            }
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| lbls.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse::<f64>().ok())?
    })
}

pub async fn scrape(app: &crate::helpers::TestApp) -> String {
    let r = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

async fn metrics_describe_what_was_served(backend: Backend) {
    let app = spawn_app(backend).await;
    app.collection(json!({
        "name": "posts", "listRule": "", "viewRule": "",
        "fields": [{"name": "title", "type": "text"}]
    }))
    .await;
    let id = app.record("posts", json!({"title": "a"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        assert_eq!(app.get("/api/collections/posts/records", None).await.0, 200);
    }
    for _ in 0..2 {
        let r = app
            .get(&format!("/api/collections/posts/records/{id}"), None)
            .await;
        assert_eq!(r.0, 200);
    }
    let missing = "abcdefghijklmno";
    let r = app
        .get(&format!("/api/collections/posts/records/{missing}"), None)
        .await;
    assert_eq!(r.0, 404);
    assert_eq!(
        app.get("/api/collections/nosuchthing/records", None)
            .await
            .0,
        404
    );
    let r = app
        .post(
            "/api/collections/users/auth-with-password",
            None,
            json!({"identity": "nobody@example.com", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(r.0, 400);

    let text = scrape(&app).await;
    let count = |route: &str, status: &str| {
        sample(
            &text,
            "http_server_request_duration_seconds_count",
            &[
                ("http_request_method", "GET"),
                ("http_route", route),
                ("http_response_status_code", status),
            ],
        )
    };
    // Exact counts per route template; raw paths (ids, names) never become labels.
    assert_eq!(
        count("/api/collections/{c}/records", "200"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(count("/api/collections/{c}/records/{id}", "200"), Some(2.0));
    assert_eq!(count("/api/collections/{c}/records/{id}", "404"), Some(1.0));
    assert_eq!(count("/api/collections/{c}/records", "404"), Some(1.0));
    assert!(!text.contains(&id) && !text.contains(missing) && !text.contains("nosuchthing"));
    // Buckets are cumulative and end in +Inf, equal to the count.
    let inf = sample(
        &text,
        "http_server_request_duration_seconds_bucket",
        &[
            ("http_request_method", "GET"),
            ("http_route", "/api/collections/{c}/records"),
            ("http_response_status_code", "200"),
            ("le", "+Inf"),
        ],
    );
    assert_eq!(inf, Some(3.0));
    // The scrape itself is the one request in flight.
    assert_eq!(
        sample(
            &text,
            "http_server_active_requests",
            &[("http_request_method", "GET")]
        ),
        Some(1.0)
    );
    // Record operations by collection, action and outcome; unknown names are one label.
    let op = |c: &str, a: &str, o: &str| {
        sample(
            &text,
            "basalt_record_operations_total",
            &[("collection", c), ("action", a), ("outcome", o)],
        )
    };
    assert_eq!(op("posts", "list", "ok"), Some(3.0));
    assert_eq!(op("posts", "view", "ok"), Some(2.0));
    assert_eq!(op("posts", "view", "not_found"), Some(1.0));
    assert_eq!(op("posts", "create", "ok"), Some(1.0));
    assert_eq!(op("_unknown", "list", "not_found"), Some(1.0));
    // Sign-ins: the superuser's (spawn_app) and the failed one.
    let signin = |o: &str| {
        sample(
            &text,
            "basalt_auth_signins_total",
            &[("method", "password"), ("outcome", o)],
        )
    };
    assert_eq!(signin("success"), Some(1.0));
    assert_eq!(signin("failure"), Some(1.0));
    // Store, outbox, process and build.
    assert!(
        sample(
            &text,
            "basalt_store_query_duration_seconds_count",
            &[("kind", "read")]
        )
        .unwrap()
            > 0.0
    );
    assert!(
        sample(
            &text,
            "basalt_store_transaction_duration_seconds_count",
            &[]
        )
        .unwrap()
            >= 2.0
    );
    assert!(sample(&text, "basalt_store_connections_max", &[]).unwrap() >= 2.0);
    assert!(sample(&text, "basalt_outbox_high_water", &[]).unwrap() >= 1.0);
    assert_eq!(
        sample(&text, "basalt_sink_lag_events", &[("sink", "webhooks")]),
        Some(0.0),
        "{text}"
    );
    assert!(sample(&text, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    // Request logs are on by default (PocketBase's maxDays 5): the requests above were queued.
    assert!(
        sample(
            &text,
            "basalt_request_logs_total",
            &[("outcome", "dropped")]
        ) == Some(0.0)
    );
    assert!(sample(&text, "process_open_fds", &[]).unwrap() > 3.0);
    assert_eq!(
        sample(
            &text,
            "basalt_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    if backend == Backend::Sqlite {
        assert!(sample(&text, "basalt_store_group_commit_size_count", &[]).unwrap() >= 1.0);
    }
    // Every family has its HELP and TYPE, histograms are histograms (never summaries).
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"));
    assert!(text.contains("# TYPE basalt_record_operations_total counter"));
    assert!(!text.contains(" summary"));
}

/// Realtime clients show up by transport while connected.
async fn realtime_clients_are_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut sse = app
        .client
        .get(format!("{}/api/realtime", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let first = sse.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("PB_CONNECT"));
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "basalt_realtime_connections",
            &[("transport", "sse")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "basalt_realtime_connections",
            &[("transport", "websocket")]
        ),
        Some(0.0)
    );
    drop(sse);
    // The stream's end is seen by the server at its next write or keep-alive; the count drops then.
    let mut left = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let text = scrape(&app).await;
        left = sample(
            &text,
            "basalt_realtime_connections",
            &[("transport", "sse")],
        );
        if left == Some(0.0) {
            break;
        }
    }
    assert_eq!(left, Some(0.0));
}

/// With a token configured, a scrape without it is refused (401) and one with it is served; with an
/// allow-list that leaves the peer out, the answer is 403. Any request may carry `X-Request-Id`; a
/// sensible one is echoed, anything else is replaced by a new id.
async fn scrapes_are_guarded_and_requests_carry_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    let serve = |access: basalt_http::metrics::MetricsAccess| {
        let ctx = app.ctx.clone();
        async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", l.local_addr().unwrap());
            tokio::spawn(basalt_http::serve_with(
                ctx,
                l,
                std::future::pending(),
                basalt_service::cluster::Lifecycle::default(),
                basalt_http::conn::HttpLimits::default(),
                access,
            ));
            url
        }
    };
    let url = serve(basalt_http::metrics::MetricsAccess {
        token: Some("s3cret-token".into()),
        allow: vec![],
        refuse_forwarded: true,
    })
    .await;
    let c = &app.client;
    let r = c.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 401);
    let r = c
        .get(format!("{url}/metrics"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{url}/metrics"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("http_server_request_duration_seconds"));

    let url = serve(basalt_http::metrics::MetricsAccess {
        token: None,
        allow: vec![basalt_core::net::Net::parse("10.0.0.0/8").unwrap()],
        refuse_forwarded: true,
    })
    .await;
    let r = c.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // The API itself is unaffected.
    assert_eq!(
        c.get(format!("{url}/api/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Through a reverse proxy on the same host (loopback peer, forwarding header): refused.
    let r = c
        .get(format!("{}/metrics", app.url))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let r = c
        .get(format!("{}/api/health", app.url))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    for bad in ["", "has space", &"x".repeat(200)] {
        let r = c
            .get(format!("{}/api/health", app.url))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap();
        assert!(
            id != bad && id.len() == 20 && id.bytes().all(|c| c.is_ascii_hexdigit()),
            "{id:?}"
        );
    }
    let r = c.get(format!("{}/nowhere", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"].len(), 20);
}

crate::both_backends!(
    metrics_describe_what_was_served,
    realtime_clients_are_counted,
    scrapes_are_guarded_and_requests_carry_ids,
);
