//! The filter language end to end: the same expressions give the same rows on SQLite and Postgres.

use serde_json::json;

use crate::helpers::TestApp;

async fn setup(app: &TestApp) -> Vec<String> {
    app.collection(json!({"name": "cats", "listRule": "", "viewRule": "", "fields": [{"name": "label", "type": "text"}]})).await;
    let cats = app.get("/api/collections/cats", app.su()).await.1;
    app.collection(
        json!({"name": "items", "listRule": "", "viewRule": "", "fields": [
            {"name": "title", "type": "text"},
            {"name": "n", "type": "number"},
            {"name": "ok", "type": "bool"},
            {"name": "when", "type": "date"},
            {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
            {"name": "meta", "type": "json"},
            {"name": "cat", "type": "relation", "collectionId": cats["id"], "maxSelect": 1},
            {"name": "cats", "type": "relation", "collectionId": cats["id"], "maxSelect": 5}
        ]}),
    )
    .await;
    let c1 = app.record("cats", json!({"label": "Red"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let c2 = app.record("cats", json!({"label": "blue"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rows = [
        json!({"title": "alpha", "n": 1, "ok": true, "when": "2024-01-01 10:00:00.000Z", "tags": ["a"], "meta": {"k": 1, "s": "x"}, "cat": c1, "cats": [c1, c2]}),
        json!({"title": "Beta", "n": 2.5, "ok": false, "when": "2025-06-01", "tags": ["a", "b"], "meta": {"k": 2}, "cat": c2, "cats": [c2]}),
        json!({"title": "gamma_%", "n": -3, "ok": true, "tags": [], "meta": null}),
    ];
    let mut ids = vec![];
    for r in rows {
        ids.push(
            app.record("items", r).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids
}

async fn expressions(app: TestApp) {
    let ids = setup(&app).await;
    let (a, b, g) = (&ids[0], &ids[1], &ids[2]);
    let cases: Vec<(&str, Vec<&String>)> = vec![
        ("n > 1", vec![b]),
        ("n >= 1 && n < 3", vec![a, b]),
        ("n = '2.5'", vec![b]),
        ("n != 1", vec![b, g]),
        ("ok = true", vec![a, g]),
        ("ok = false || n < 0", vec![b, g]),
        ("title ~ 'ALP'", vec![a]),
        ("title !~ 'a'", vec![]),
        ("title ~ 'a_%'", vec![a]),
        ("title ~ 'a_'", vec![g]),
        ("title:lower = 'beta'", vec![b]),
        ("when > '2024-06-01'", vec![b]),
        ("when = ''", vec![g]),
        ("when = null", vec![g]),
        ("strftime('%Y-%m', when) = '2024-01'", vec![a]),
        ("strftime('%H:%M on %d', when) = '00:00 on 01'", vec![b]),
        ("strftime('%Y', title) != ''", vec![]),
        ("strftime('%d%d', when) = '0101'", vec![a, b]),
        ("when < @now && when != ''", vec![a, b]),
        ("tags:each ?= 'b'", vec![b]),
        ("tags:each = 'a'", vec![a]),
        ("tags:length > 1", vec![b]),
        ("tags:length = 0", vec![g]),
        ("tags ~ 'b'", vec![b]),
        ("meta.k = 2", vec![b]),
        ("meta.s = 'x'", vec![a]),
        ("meta.k > 1", vec![b]),
        ("meta.k < 10", vec![a, b]),
        ("cat.label = 'Red'", vec![a]),
        ("cat.label ~ 'BLU'", vec![b]),
        ("cats.label ?= 'Red'", vec![a]),
        ("cats.label = 'blue'", vec![b]),
        ("cats:length = 2", vec![a]),
        ("cat = ''", vec![g]),
        ("(n > 0 && ok = true) || title = 'Beta'", vec![a, b]),
        ("id = 'nonexistent'", vec![]),
        ("n > 0 // a comment", vec![a, b]),
    ];
    for (f, want) in cases {
        let mut got = app
            .ids("items", None, &[("filter", f), ("sort", "n")])
            .await;
        got.sort();
        let mut want: Vec<String> = want.into_iter().cloned().collect();
        want.sort();
        assert_eq!(got, want, "{:?}: filter {f:?}", app.backend);
    }
    // back-relation from cats
    let r = app
        .get_q(
            "/api/collections/cats/records",
            None,
            &[("filter", "items_via_cat.title ?= 'alpha'")],
        )
        .await;
    assert_eq!(r.1["items"].as_array().unwrap().len(), 1, "{}", r.1);
    assert_eq!(r.1["items"][0]["label"], "Red");
    // sort through a relation
    let r = app
        .ids(
            "items",
            None,
            &[("sort", "-cat.label,title"), ("filter", "cat != ''")],
        )
        .await;
    assert_eq!(
        r,
        vec![b.clone(), a.clone()],
        "byte order on both backends: 'blue' > 'Red'"
    );
}

/// Random filters and sorts from the grammar, run against the real database: never a 500. This is the
/// bounded fuzz target for the compiler's SQL on each dialect (the parser and the "values never reach
/// SQL text" property are fuzzed in basalt-core's unit tests).
async fn random_filters_never_fail_the_server(app: TestApp) {
    setup(&app).await;
    const IDENTS: &[&str] = &[
        "id",
        "title",
        "title:lower",
        "n",
        "ok",
        "when",
        "meta",
        "meta.k",
        "meta.s",
        "tags",
        "tags:each",
        "tags:length",
        "cat",
        "cat.label",
        "cat.label:lower",
        "cats",
        "cats.label",
        "cats:length",
        "cats:each",
        "created",
        "@now",
        "@yesterday",
        "@month",
        "@request.method",
        "@collection.cats.label",
        "@request.auth.id",
        "nope",
        "cat.nope",
        "geoDistance(meta.k, n, 1, 2)",
        "strftime('%Y-%m', when)",
        "strftime('%w \\\"x', created, 'start of month')",
        "geoDistance(title, 0, cat.label, -1)",
    ];
    const LITS: &[&str] = &[
        "'a'",
        "\"Red\"",
        "''",
        "0",
        "-2.5",
        "1000",
        "true",
        "false",
        "null",
        "'2024-01-01'",
        "'%a%'",
        "'_'",
    ];
    const OPS: &[&str] = &[
        "=", "!=", ">", ">=", "<", "<=", "~", "!~", "?=", "?!=", "?>", "?<", "?~", "?!~",
    ];
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..250 {
        let mut parts = vec![];
        for _ in 0..(1 + next(3)) {
            let l = if next(4) == 0 {
                LITS[next(LITS.len())]
            } else {
                IDENTS[next(IDENTS.len())]
            };
            let r = if next(2) == 0 {
                LITS[next(LITS.len())]
            } else {
                IDENTS[next(IDENTS.len())]
            };
            parts.push(format!("{l} {} {r}", OPS[next(OPS.len())]));
        }
        let joiner = if next(2) == 0 { " && " } else { " || " };
        let f = parts.join(joiner);
        let sort = [
            "",
            "-n",
            "title,-created",
            "cat.label",
            "@random",
            "-@rowid",
            "meta.k",
        ][next(7)];
        for token in [None, app.su()] {
            let r = app
                .get_q(
                    "/api/collections/items/records",
                    token,
                    &[("filter", &f), ("sort", sort)],
                )
                .await;
            assert!(
                matches!(r.0, 200 | 400 | 403),
                "{:?} filter {f:?} sort {sort:?}: {} {}",
                app.backend,
                r.0,
                r.1
            );
            *statuses.entry(r.0).or_insert(0) += 1;
        }
    }
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 100,
        "most generated filters are valid: {statuses:?}"
    );
}

/// A json field holding a scalar compares by value on both backends.
async fn json_scalars(app: TestApp) {
    app.collection(json!({"name": "vals", "listRule": "", "fields": [{"name": "label", "type": "text"}, {"name": "v", "type": "json"}]})).await;
    for (l, v) in [
        ("five", json!(5)),
        ("ten", json!(10)),
        ("abc", json!("abc")),
        ("yes", json!(true)),
        ("none", json!(null)),
    ] {
        app.record("vals", json!({"label": l, "v": v})).await;
    }
    let labels = |r: crate::helpers::Resp| -> Vec<String> {
        let mut v: Vec<String> = r.1["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["label"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    for (f, want) in [
        ("v = 5", vec!["five"]),
        ("v > 3", vec!["five", "ten"]),
        ("v < 7", vec!["five"]),
        ("v = 'abc'", vec!["abc"]),
        ("v = true", vec!["yes"]),
    ] {
        let r = app
            .get_q("/api/collections/vals/records", None, &[("filter", f)])
            .await;
        assert_eq!(r.0, 200, "{f}: {}", r.1);
        assert_eq!(labels(r), want, "{:?}: {f}", app.backend);
    }
}

async fn geo_distance(app: TestApp) {
    app.collection(json!({"name": "places", "listRule": "", "fields": [{"name": "name", "type": "text"}, {"name": "at", "type": "geoPoint"}]})).await;
    // Sofia, Plovdiv (~130 km), Paris (~1,750 km)
    app.record(
        "places",
        json!({"name": "sofia", "at": {"lon": 23.3219, "lat": 42.6977}}),
    )
    .await;
    app.record(
        "places",
        json!({"name": "plovdiv", "at": {"lon": 24.7453, "lat": 42.1354}}),
    )
    .await;
    app.record(
        "places",
        json!({"name": "paris", "at": {"lon": 2.3522, "lat": 48.8566}}),
    )
    .await;
    let names = |r: &crate::helpers::Resp| -> Vec<String> {
        r.1["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    let r = app
        .get_q(
            "/api/collections/places/records",
            None,
            &[
                (
                    "filter",
                    "geoDistance(at.lon, at.lat, 23.3219, 42.6977) < 200",
                ),
                ("sort", "name"),
            ],
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(names(&r), vec!["plovdiv", "sofia"]);
    let r = app
        .get_q("/api/collections/places/records", None, &[("filter", "geoDistance(at.lon, at.lat, 23.3219, 42.6977) > 1700 && geoDistance(at.lon, at.lat, 23.3219, 42.6977) < 1800")])
        .await;
    assert_eq!(names(&r), vec!["paris"]);
    let r = app
        .get_q(
            "/api/collections/places/records",
            None,
            &[("filter", "geoDistance(1, 2, 3) < 1")],
        )
        .await;
    crate::helpers::assert_error(&r, 400);

    // A geoPoint is kept as {lon, lat} only (found by schemathesis: strings and stray keys were
    // stored as sent and answered in a shape the protocol never has).
    let url = "/api/collections/places/records";
    let r = app
        .post(
            url,
            app.su(),
            json!({"name": "s", "at": "{\"lon\": 1.5, \"lat\": 2, \"x\": [1]}"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["at"], json!({"lon": 1.5, "lat": 2}));
    let r = app
        .post(
            url,
            app.su(),
            json!({"name": "n", "at": {"lat": null, "q": 1}}),
        )
        .await;
    assert_eq!(r.1["at"], json!({"lon": 0, "lat": 0}), "{}", r.1);
    for (at, code) in [
        (json!({"lon": "east", "lat": 1}), "validation_invalid_value"),
        (json!([1, 2]), "validation_invalid_value"),
        (
            json!({"lon": 0, "lat": 90.5}),
            "validation_invalid_latitude",
        ),
        (
            json!({"lon": -181, "lat": 0}),
            "validation_invalid_longitude",
        ),
    ] {
        let r = app
            .post(url, app.su(), json!({"name": "bad", "at": at}))
            .await;
        let e = crate::helpers::assert_error(&r, 400);
        assert_eq!(e["at"]["code"], code, "{at}: {e}");
    }
}

crate::both!(
    expressions,
    random_filters_never_fail_the_server,
    geo_distance,
    json_scalars
);
