//! PII protection (issue #16) through the real server on SQLite and PostgreSQL: nothing in clear at
//! rest (database file and WAL, pg_dump, outbox, backups), blind-index equality, unique and email
//! sign-in on an encrypted email, masks for callers failing `revealRule` in REST, expand, batch,
//! realtime and events, the reveal audit, values that do not decrypt elsewhere, key rotation under
//! writes, crypto-shredding erasure that survives a backup restore.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{assert_error, spawn_app_with, Backend, TestApp};

fn key(b: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([b; 32])
}

fn ring(spec: &str) -> Arc<basalt_service::keyring::KeyRing> {
    Arc::new(basalt_service::keyring::KeyRing::parse_env(spec).unwrap())
}

fn opts(spec: &str) -> basalt_http::Options {
    basalt_http::Options {
        pii_keys: Some(ring(spec)),
        ..Default::default()
    }
}

const EMAIL: &str = "alice.secret@example.com";
const PHONE: &str = "+44 7700 900123";
const SSN: &str = "123-45-6789";
const DOB: &str = "1984-03-09 00:00:00.000Z";
const CARD: &str = "4111 1111 1111 1234";

/// `patients` (auth): email encrypted and searchable, phone/ssn/dob encrypted; each revealed to the
/// patient, phone also to support staff. `visits` relate to patients.
async fn schema(app: &TestApp) {
    app.collection(json!({
        "name": "patients", "type": "auth",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "id = @request.auth.id",
        "fields": [
            {"name": "email", "type": "email", "system": true, "required": true,
             "pii": {"searchable": true, "mask": "partial", "revealRule": "id = @request.auth.id"}},
            {"name": "phone", "type": "text",
             "pii": {"mask": "partial", "revealRule": "id = @request.auth.id || @request.auth.role = 'support'"}},
            {"name": "ssn", "type": "text", "pii": {"mask": "last4", "revealRule": "id = @request.auth.id"}},
            {"name": "dob", "type": "date", "pii": {"mask": "partial", "revealRule": "id = @request.auth.id"}},
            {"name": "score", "type": "number", "pii": {"searchable": true, "mask": "hash"}},
            {"name": "card", "type": "text", "pii": {"fpe": "digits", "revealRule": "id = @request.auth.id"}},
            {"name": "role", "type": "text"}
        ]
    }))
    .await;
    app.collection(json!({
        "name": "visits", "listRule": "", "viewRule": "", "createRule": "",
        "fields": [
            {"name": "note", "type": "text"},
            {"name": "patient", "type": "relation", "collectionId": "patients", "maxSelect": 1}
        ]
    }))
    .await;
}

async fn sign_up(app: &TestApp, email: &str, extra: Value) -> (String, String) {
    let mut body = json!({"email": email, "password": "password123", "passwordConfirm": "password123", "emailVisibility": true});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app
        .post("/api/collections/patients/records", None, body)
        .await;
    assert_eq!(r.0, 200, "sign up: {}", r.1);
    let id = r.1["id"].as_str().unwrap().to_string();
    let a = app
        .post(
            "/api/collections/patients/auth-with-password",
            None,
            json!({"identity": email.to_uppercase(), "password": "password123"}),
        )
        .await;
    assert_eq!(a.0, 200, "email sign-in through the blind index: {}", a.1);
    (id, a.1["token"].as_str().unwrap().to_string())
}

/// Every byte the database holds: the SQLite files (records, request logs) and their WALs, or a
/// pg_dump.
async fn database_bytes(app: &TestApp) -> Vec<u8> {
    match app.backend {
        Backend::Sqlite => {
            let dir = app.ctx.files.tmp_dir().parent().unwrap().to_path_buf();
            let mut all = Vec::new();
            for name in ["data.db", "data.db-wal", "logs.db", "logs.db-wal"] {
                if let Ok(b) = std::fs::read(dir.join(name)) {
                    all.extend(b);
                }
            }
            assert!(!all.is_empty(), "no database file under {}", dir.display());
            all
        }
        Backend::Postgres => {
            let out = std::process::Command::new("pg_dump")
                .arg(app.db_url.as_ref().unwrap())
                .output()
                .expect("pg_dump runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn assert_no_plaintext(what: &str, bytes: &[u8]) {
    for p in [
        EMAIL,
        "alice.secret",
        PHONE,
        "7700 900123",
        SSN,
        "1984-03-09",
        CARD,
        "1111 1234",
    ] {
        if let Some(at) = bytes.windows(p.len()).position(|w| w == p.as_bytes()) {
            let from = at.saturating_sub(300);
            panic!(
                "{what} holds {p:?} in clear: …{}…",
                String::from_utf8_lossy(&bytes[from..(at + 100).min(bytes.len())])
            );
        }
    }
}

async fn at_rest_search_and_masks(backend: Backend) {
    let app = spawn_app_with(backend, opts(&format!("k1:{}", key(1)))).await;
    schema(&app).await;
    let (alice, ta) = sign_up(
        &app,
        EMAIL,
        json!({"phone": PHONE, "ssn": SSN, "dob": DOB, "score": 42, "card": CARD}),
    )
    .await;
    let (_bob, tb) = sign_up(&app, "bob@example.com", json!({"phone": "+1 555 0100 777"})).await;
    let (_sam, ts) = sign_up(&app, "sam@example.com", json!({"role": "support"})).await;

    // The patient sees her own values; the superuser too.
    for t in [ta.as_str(), app.su.as_str()] {
        let r = app
            .get(
                &format!("/api/collections/patients/records/{alice}"),
                Some(t),
            )
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
        assert_eq!(r.1["email"], EMAIL);
        assert_eq!(r.1["phone"], PHONE);
        assert_eq!(r.1["ssn"], SSN);
        assert_eq!(r.1["dob"], DOB);
        assert_eq!(r.1["card"], CARD);
    }
    // `score` has no revealRule: superusers only.
    let r = app
        .get(
            &format!("/api/collections/patients/records/{alice}"),
            Some(&ta),
        )
        .await;
    assert!(r.1["score"].as_str().unwrap().starts_with("h:"), "{}", r.1);
    let r = app
        .get(
            &format!("/api/collections/patients/records/{alice}"),
            app.su(),
        )
        .await;
    assert_eq!(r.1["score"], 42);
    // Another patient, and a guest, see masks (list and view, fast path and `fields`).
    let masked = |v: &Value| {
        assert_eq!(v["email"], "a***@e***.com", "{v}");
        assert_eq!(v["phone"], "+44 **** ***123", "{v}");
        assert_eq!(v["ssn"], "****6789", "{v}");
        assert_eq!(v["dob"], "1984-**-** **:**:**.***Z", "{v}");
        assert!(v["score"].as_str().unwrap().starts_with("h:"), "{v}");
        // fpe "digits": a same-format token (digits replaced, spaces kept), stable per value.
        let card = v["card"].as_str().unwrap();
        assert_eq!(card.len(), CARD.len(), "{v}");
        assert!(
            card.chars()
                .zip(CARD.chars())
                .all(|(a, b)| a.is_ascii_digit() == b.is_ascii_digit()),
            "{v}"
        );
        assert_ne!(card, CARD);
    };
    for t in [Some(tb.as_str()), None] {
        let r = app
            .get(&format!("/api/collections/patients/records/{alice}"), t)
            .await;
        masked(&r.1);
        let r = app
            .get_q(
                "/api/collections/patients/records",
                t,
                &[
                    ("filter", &format!("id = '{alice}'")),
                    ("fields", "id,email,phone,ssn,dob,score,card"),
                ],
            )
            .await;
        masked(&r.1["items"][0]);
    }
    // Support staff pass the phone's revealRule, not the others'.
    let r = app
        .get(
            &format!("/api/collections/patients/records/{alice}"),
            Some(&ts),
        )
        .await;
    assert_eq!(r.1["phone"], PHONE);
    assert_eq!(r.1["ssn"], "****6789");

    // Expand: a visit shows its patient masked to others, in clear to the patient.
    let v = app
        .post(
            "/api/collections/visits/records",
            Some(&ta),
            json!({"note": "checkup", "patient": alice}),
        )
        .await;
    assert_eq!(v.0, 200, "{}", v.1);
    let vid = v.1["id"].as_str().unwrap();
    let path = format!("/api/collections/visits/records/{vid}");
    let e = app.get_q(&path, Some(&tb), &[("expand", "patient")]).await;
    masked(&e.1["expand"]["patient"]);
    let e = app.get_q(&path, Some(&ta), &[("expand", "patient")]).await;
    assert_eq!(e.1["expand"]["patient"]["ssn"], SSN);

    // Batch: the created record comes back masked to a caller failing revealRule.
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"batch": {"enabled": true}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let b = app
        .post(
            "/api/batch",
            None,
            json!({"requests": [{"method": "POST", "url": "/api/collections/patients/records",
                "body": {"email": "carol@example.com", "password": "password123", "passwordConfirm": "password123",
                         "emailVisibility": true, "ssn": "987-65-4321"}}]}),
        )
        .await;
    assert_eq!(b.0, 200, "{}", b.1);
    assert_eq!(b.1[0]["body"]["ssn"], "****4321", "{}", b.1);
    assert_eq!(b.1[0]["body"]["email"], "c***@e***.com");

    // Equality through the blind index; unique on it; everything else is refused naming the field.
    let ids = app
        .ids(
            "patients",
            app.su(),
            &[("filter", &format!("email = '{}'", EMAIL.to_uppercase()))],
        )
        .await;
    assert_eq!(ids, vec![alice.clone()]);
    let ids = app
        .ids(
            "patients",
            app.su(),
            &[("filter", "score = 42 && email != ''")],
        )
        .await;
    assert_eq!(ids, vec![alice.clone()]);
    let n = app
        .ids(
            "patients",
            app.su(),
            &[("filter", &format!("email != '{EMAIL}'"))],
        )
        .await;
    assert_eq!(n.len(), 3, "everyone else");
    let dup = app
        .post(
            "/api/collections/patients/records",
            None,
            json!({"email": EMAIL, "password": "password123", "passwordConfirm": "password123"}),
        )
        .await;
    let d = assert_error(&dup, 400);
    assert_eq!(d["email"]["code"], "validation_not_unique", "{}", dup.1);
    for (q, key, field) in [
        ("filter", "email ~ 'alice'", "email"),
        ("filter", "email > 'a'", "email"),
        ("filter", "phone = 'x'", "phone"),
        ("filter", "email = phone", "email"),
        ("sort", "email", "email"),
    ] {
        let r = app
            .get_q("/api/collections/patients/records", app.su(), &[(q, key)])
            .await;
        let d = assert_error(&r, 400);
        assert_eq!(d[q]["code"], "validation_pii_filter", "{key}: {}", r.1);
        assert!(
            r.1["message"].as_str().unwrap().starts_with(field),
            "{key}: the message names the field: {}",
            r.1
        );
    }

    // Realtime: the patient's subscription gets her values, another patient's the masks; his
    // subscription filters on her encrypted email (through the snapshot's blind index), and a filter
    // on another email gets nothing.
    let url = app.url.replace("http://", "ws://") + "/api/realtime/ws";
    let by_email = |e: &str| {
        let opts = json!({"query": {"filter": format!("email = '{e}'")}}).to_string();
        format!(
            "patients/*?options={}",
            percent_encoding::utf8_percent_encode(&opts, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    let mut socks = Vec::new();
    for (t, topics) in [
        (&ta, vec![format!("patients/{alice}")]),
        (&tb, vec![by_email("nobody@example.com"), by_email(EMAIL)]),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.clone()).await.unwrap();
        next_json(&mut ws).await;
        ws.send(Message::Text(
            json!({"subscriptions": topics, "authorization": t})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
        assert_eq!(next_json(&mut ws).await["event"], "PB_SUBSCRIPTIONS");
        socks.push(ws);
    }
    let u = app
        .patch(
            &format!("/api/collections/patients/records/{alice}"),
            Some(&ta),
            json!({"role": "patient"}),
        )
        .await;
    assert_eq!(u.0, 200, "{}", u.1);
    assert_eq!(u.1["ssn"], SSN, "the update's answer, to the patient");
    let mine = next_json(&mut socks[0]).await;
    assert_eq!(mine["data"]["record"]["ssn"], SSN, "{mine}");
    let other = next_json(&mut socks[1]).await;
    assert_eq!(
        other["event"],
        by_email(EMAIL),
        "only the filter on her email matched"
    );
    masked(&other["data"]["record"]);

    // The reveals were audited (who, record, fields, route; never a value), with their events.
    let audit = wait_for(
        &app,
        "_piiAudit",
        &format!("recordRef = '{alice}' && actor = 'patients:{alice}'"),
        1,
    )
    .await;
    let view = format!("GET /api/collections/patients/records/{alice}");
    let row = audit
        .iter()
        .find(|r| r["route"] == view.as_str())
        .unwrap_or_else(|| panic!("no audit of {view}: {audit:?}"));
    assert_eq!(row["fields"], "phone,ssn,dob,card,email", "{row}");
    assert!(row["count"].as_i64().unwrap() >= 1, "{row}");
    assert_eq!(row["ip"], "127.0.0.1", "{row}");
    assert!(
        audit
            .iter()
            .any(|r| r["route"] == "POST /api/collections/patients/auth-with-password"),
        "the sign-in answer revealed her own record: {audit:?}"
    );
    // A burst of identical reveals is gathered into rows with a count: every read is counted.
    for _ in 0..30 {
        let r = app
            .get(
                &format!("/api/collections/patients/records/{alice}"),
                Some(&ta),
            )
            .await;
        assert_eq!(r.0, 200);
    }
    let filter = format!("route = '{view}' && actor = 'patients:{alice}'");
    let mut total = 0;
    let mut rows = 0;
    for _ in 0..100 {
        let r = wait_for(&app, "_piiAudit", &filter, 1).await;
        total = r.iter().map(|x| x["count"].as_i64().unwrap()).sum::<i64>();
        rows = r.len();
        if total >= 32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Her two views above, and the burst.
    assert_eq!(total, 32, "every reveal counted");
    assert!(rows < 32, "identical reveals share rows: {rows}");
    let metrics = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let audited = metrics
        .lines()
        .find(|l| l.starts_with("basalt_pii_reveals_total{outcome=\"audited\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no basalt_pii_reveals_total in {metrics}"));
    assert!(audited >= 32.0, "the reveals are counted: {audited}");
    // Superusers' reveals are audited too.
    wait_for(&app, "_piiAudit", "actor ~ '_superusers:'", 1).await;
    assert_no_plaintext("the audit", audit_bytes(&audit).as_bytes());
    // Nobody writes the audit through the API.
    let w = app
        .post(
            "/api/collections/_piiAudit/records",
            app.su(),
            json!({"actor": "forged"}),
        )
        .await;
    assert_eq!(w.0, 404, "{}", w.1);

    // The outbox holds masks, never values; its audit rows are basalt.pii.revealed events.
    let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
    q.push("SELECT collection, data FROM _events");
    let rows = app.store().query(&q).await.unwrap();
    let mut outbox = String::new();
    let mut audit_events = 0;
    for r in &rows.rows {
        let c = r[0].as_str().unwrap_or("");
        audit_events += usize::from(c == "_piiAudit");
        outbox.push_str(r[1].as_str().unwrap_or(""));
    }
    assert!(outbox.contains("****6789"), "events carry the masks");
    let token = app
        .get(&format!("/api/collections/patients/records/{alice}"), None)
        .await
        .1["card"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        outbox.contains(&token),
        "events carry the fpe token {token}"
    );
    assert_no_plaintext("the outbox", outbox.as_bytes());
    assert!(audit_events > 0, "reveal events on the bus");

    // At rest: neither the database files (and WALs, request logs included: they are written
    // within ~100 ms) nor a pg_dump holds a value in clear.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_no_plaintext("the database", &database_bytes(&app).await);
    if backend == Backend::Sqlite {
        let r = app
            .post("/api/backups", app.su(), json!({"name": "pii.zip"}))
            .await;
        assert_eq!(r.0, 204, "{}", r.1);
        let zip = app
            .ctx
            .files
            .tmp_dir()
            .parent()
            .unwrap()
            .join("backups/pii.zip");
        let mut a = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
        let mut db = Vec::new();
        std::io::Read::read_to_end(&mut a.by_name("data.db").unwrap(), &mut db).unwrap();
        assert_no_plaintext("the backup", &db);
        // And through SQL (a byte search can miss a value split across overflow pages). The
        // outbox's masks were checked above: by now the pruner may have removed delivered events,
        // so what is left of them is only checked for plaintext.
        let dir = app.ctx.files.tmp_dir().join("pii-backup-check");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data.db"), &db).unwrap();
        let copy = basalt_store::open(&dir, None).await.unwrap();
        let mut q = basalt_core::sql::Sql::new(copy.dialect());
        q.push("SELECT data FROM _events UNION ALL SELECT CAST(ssn AS TEXT) FROM patients");
        let events: String = copy
            .query(&q)
            .await
            .unwrap()
            .rows
            .iter()
            .filter_map(|r| r[0].as_str().map(str::to_string))
            .collect();
        assert!(events.contains("pii1:"), "the backup's patients are sealed");
        assert_no_plaintext("the backup's outbox and records", events.as_bytes());
    }

    // A value moved to another row or field does not decrypt (and answers no error).
    let mut m = basalt_core::sql::Sql::new(app.ctx.dialect());
    m.push("UPDATE patients SET phone = (SELECT ssn FROM patients WHERE id = ")
        .bind(basalt_core::sql::Value::Text(alice.clone()))
        .push("), ssn = (SELECT ssn FROM patients WHERE id = ")
        .bind(basalt_core::sql::Value::Text(alice.clone()))
        .push(") WHERE email != (SELECT email FROM patients WHERE id = ")
        .bind(basalt_core::sql::Value::Text(alice.clone()))
        .push(")");
    let mut tx = app.store().begin().await.unwrap();
    tx.execute(&m).await.unwrap();
    tx.commit().await.unwrap();
    app.ctx.cache.clear();
    let list = app
        .get_q(
            "/api/collections/patients/records",
            app.su(),
            &[("perPage", "50")],
        )
        .await;
    assert_eq!(list.0, 200, "{}", list.1);
    for it in list.1["items"].as_array().unwrap() {
        if it["id"] == alice {
            assert_eq!(it["ssn"], SSN, "the original still decrypts");
            assert_eq!(it["phone"], PHONE);
        } else {
            assert_eq!(it["ssn"], Value::Null, "copied from another row: {it}");
            assert_eq!(
                it["phone"],
                Value::Null,
                "copied from another field and row: {it}"
            );
        }
    }
}

fn audit_bytes(rows: &[Value]) -> String {
    rows.iter().map(Value::to_string).collect()
}

async fn next_json(ws: &mut crate::realtime::Ws) -> Value {
    crate::realtime::next_json(ws).await
}

/// Polls a superuser list until `n` rows match (the audit is written off the request path).
async fn wait_for(app: &TestApp, coll: &str, filter: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let r = app
            .get_q(
                &format!("/api/collections/{coll}/records"),
                app.su(),
                &[("filter", filter), ("perPage", "200")],
            )
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
        let items = r.1["items"].as_array().unwrap().clone();
        if items.len() >= n {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {n} rows in {coll} matching {filter}");
}

/// The code of the first `fields.<i>.pii` error in an error's data.
fn pii_error(d: &Value) -> (String, String) {
    let e = d["fields"]
        .as_object()
        .and_then(|m| m.values().find_map(|v| v.get("pii").cloned()))
        .unwrap_or_else(|| panic!("no fields.<i>.pii error in {d}"));
    (
        e["code"].as_str().unwrap_or("").to_string(),
        e["message"].as_str().unwrap_or("").to_string(),
    )
}

/// Definitions are validated: pii on a type that cannot carry it, bad options, a server without keys,
/// toggling pii on an existing field.
async fn definitions_are_checked(backend: Backend) {
    let app = spawn_app_with(backend, opts(&format!("k1:{}", key(1)))).await;
    for (field, code) in [
        (
            json!({"name": "b", "type": "bool", "pii": {}}),
            "validation_invalid_pii",
        ),
        (
            json!({"name": "t", "type": "text", "pii": {"revealRule": "nope ="}}),
            "validation_invalid_pii",
        ),
        (
            json!({"name": "t", "type": "text", "pii": {"revealRule": "missing = 1"}}),
            "validation_invalid_rule",
        ),
    ] {
        let r = app
            .post(
                "/api/collections",
                app.su(),
                json!({"name": "c1", "fields": [field]}),
            )
            .await;
        let d = assert_error(&r, 400);
        assert_eq!(pii_error(&d).0, code, "{}", r.1);
    }
    let r = app
        .post(
            "/api/collections",
            app.su(),
            json!({"name": "c2", "fields": [{"name": "t", "type": "text", "pii": {"mask": "sometimes"}}]}),
        )
        .await;
    assert_error(&r, 400);
    // searchable cannot change while the field's existing values are still being encrypted (an
    // `api` node runs no encryption worker, so they stay pending here).
    let mut o = opts(&format!("k1:{}", key(1)));
    o.target = basalt_service::roles::Target::find("api");
    let api = spawn_app_with(backend, o).await;
    api.collection(json!({"name": "c3", "fields": [{"name": "n", "type": "text"}]}))
        .await;
    api.record("c3", json!({"n": "v1"})).await;
    let r = change_fields(&api, "c3", |name, f| {
        if name == "n" {
            f.insert("pii".into(), json!({}));
        }
    })
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = change_fields(&api, "c3", |name, f| {
        if name == "n" {
            f.insert("pii".into(), json!({"searchable": true}));
        }
    })
    .await;
    let d = assert_error(&r, 400);
    assert!(pii_error(&d).1.contains("being encrypted"), "{}", r.1);
    let r = app
        .post(
            "/api/collections",
            app.su(),
            json!({"name": "c4", "fields": [{"name": "t", "type": "text", "pii": {}}], "indexes": ["CREATE UNIQUE INDEX idx_c4_t ON c4 (t)"]}),
        )
        .await;
    let d = assert_error(&r, 400);
    assert!(
        d["indexes"]["0"]["message"]
            .as_str()
            .unwrap()
            .contains("searchable"),
        "{}",
        r.1
    );
    // Without a key ring, no field can be marked pii.
    let bare = spawn_app_with(backend, basalt_http::Options::default()).await;
    let r = bare
        .post(
            "/api/collections",
            bare.su(),
            json!({"name": "c5", "fields": [{"name": "t", "type": "text", "pii": {}}]}),
        )
        .await;
    let d = assert_error(&r, 400);
    assert!(pii_error(&d).1.contains("BASALT_PII_KEYS"), "{}", r.1);
}

/// GETs collection `coll`, lets `edit` change each field (by name), and PATCHes the fields back.
async fn change_fields(
    app: &TestApp,
    coll: &str,
    edit: impl Fn(&str, &mut serde_json::Map<String, Value>),
) -> crate::helpers::Resp {
    let def = app
        .get(&format!("/api/collections/{coll}"), app.su())
        .await
        .1;
    let mut fields = def["fields"].clone();
    for f in fields.as_array_mut().unwrap() {
        let name = f["name"].as_str().unwrap().to_string();
        edit(&name, f.as_object_mut().unwrap());
    }
    app.patch(
        &format!("/api/collections/{coll}"),
        app.su(),
        json!({"fields": fields}),
    )
    .await
}

/// A second application on the same store with another key ring, served on its own port.
async fn with_ring(app: &TestApp, spec: &str) -> (basalt_http::AppCtx, String) {
    let ctx = basalt_http::build_with(app.store(), opts(spec))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let c = ctx.clone();
    tokio::spawn(async move {
        let _ = basalt_http::serve(c, listener, std::future::pending()).await;
    });
    (ctx, url)
}

/// The erased subject: the record stays, its pii is gone (values, blind index), export says so.
async fn check_erased(app: &TestApp, victim: &str, email: &str) {
    let r = app
        .get(
            &format!("/api/collections/people/records/{victim}"),
            app.su(),
        )
        .await;
    assert_eq!(r.0, 200, "the record stays: {}", r.1);
    assert_eq!(r.1["email"], Value::Null, "{}", r.1);
    assert_eq!(r.1["phone"], Value::Null, "{}", r.1);
    assert_eq!(r.1["n"], 3, "the rest of the record is kept");
    let f = app
        .ids(
            "people",
            app.su(),
            &[("filter", &format!("email = '{email}'"))],
        )
        .await;
    assert!(f.is_empty(), "the blind index is gone too");
    let x = app
        .get(&format!("/api/pii/export/people/{victim}"), app.su())
        .await;
    assert_eq!(x.0, 200, "{}", x.1);
    assert_eq!(x.1["erased"], true, "{}", x.1);
}

/// Erasure (crypto-shredding), also after restoring a backup taken before it; then rotation under
/// writes: with k2 primary, new writes use k2 at once, `rotate` moves every record while writers keep
/// updating and creating, and afterwards a server holding only k2 reads every value and finds every
/// email.
async fn rotation_and_erasure(backend: Backend) {
    let app = spawn_app_with(backend, opts(&format!("k1:{}", key(1)))).await;
    app.collection(json!({
        "name": "people", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "fields": [
            {"name": "email", "type": "email", "pii": {"searchable": true}},
            {"name": "phone", "type": "text", "pii": {"mask": "last4"}},
            {"name": "n", "type": "number"}
        ],
        "indexes": ["CREATE UNIQUE INDEX idx_people_email ON people (email)"]
    }))
    .await;
    let mut ids = Vec::new();
    for i in 0..120 {
        let r = app
            .record("people", json!({"email": format!("p{i}@example.com"), "phone": format!("+1 555 {i:04}"), "n": 3}))
            .await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }

    // Erasure, with a backup taken before it (SQLite: on PostgreSQL backups are pg_dump's).
    let victim = ids[3].clone();
    if backend == Backend::Sqlite {
        let r = app
            .post("/api/backups", app.su(), json!({"name": "before.zip"}))
            .await;
        assert_eq!(r.0, 204, "{}", r.1);
    }
    let guest = app
        .post(
            "/api/pii/erase",
            None,
            json!({"collection": "people", "id": victim}),
        )
        .await;
    assert_error(&guest, 401);
    let bad = app.post("/api/pii/erase", app.su(), json!({})).await;
    let d = assert_error(&bad, 400);
    assert_eq!(d["collection"]["code"], "validation_required");
    // A guest's masked read first (it fills the mask cache), then the erasure.
    let g = app
        .get(&format!("/api/collections/people/records/{victim}"), None)
        .await;
    assert_eq!(g.1["phone"], "****0003", "{}", g.1);
    let r = app
        .post(
            "/api/pii/erase",
            app.su(),
            json!({"collection": "people", "id": victim}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    check_erased(&app, &victim, "p3@example.com").await;
    let g = app
        .get(&format!("/api/collections/people/records/{victim}"), None)
        .await;
    assert_eq!(
        g.1["phone"],
        Value::Null,
        "no mask outlives the key: {}",
        g.1
    );
    let other = app
        .get(&format!("/api/pii/export/people/{}", ids[4]), app.su())
        .await;
    assert_eq!(other.1["record"]["email"], "p4@example.com", "{}", other.1);
    assert_eq!(other.1["erased"], false);
    if backend == Backend::Sqlite {
        let r = app
            .post("/api/backups/before.zip/restore", app.su(), json!({}))
            .await;
        assert_eq!(r.0, 204, "{}", r.1);
        check_erased(&app, &victim, "p3@example.com").await;
        let r = app
            .get(
                &format!("/api/collections/people/records/{}", ids[4]),
                app.su(),
            )
            .await;
        assert_eq!(
            r.1["email"], "p4@example.com",
            "others are restored readable"
        );
    }

    // Rotation: a server with k2 primary (k1 kept to read) rotates while writers write through it.
    let (ctx2, url2) = with_ring(&app, &format!("k2:{},k1:{}", key(2), key(1))).await;
    let backlog = basalt_service::privacy::rotation_backlog(&ctx2)
        .await
        .unwrap();
    assert_eq!(
        backlog,
        vec![("people".to_string(), 119)],
        "all but the erased one"
    );
    let client = reqwest::Client::new();
    let su = app.su.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let (client, url, su, ids, stop) = (
            client.clone(),
            url2.clone(),
            su.clone(),
            ids.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut made = Vec::new();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || i < 3 {
                let id = &ids[(i * 7 + w + 10) % ids.len()];
                let r = client
                    .patch(format!("{url}/api/collections/people/records/{id}"))
                    .bearer_auth(&su)
                    .json(&json!({"n+": 1}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let e = format!("w{w}-{i}@example.com");
                let r = client
                    .post(format!("{url}/api/collections/people/records"))
                    .bearer_auth(&su)
                    .json(&json!({"email": e, "phone": "+1 555 9999"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                made.push(e);
                i += 1;
            }
            made
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut seen = Vec::new();
    let n = basalt_service::privacy::rotate(&ctx2, |c, done, left| {
        seen.push((c.to_string(), done, left))
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut made = Vec::new();
    for w in writers {
        made.extend(w.await.unwrap());
    }
    // Each record was rewrapped either by the rotation or by a write through the k2 server.
    assert!(n > 0, "the rotation rewrapped records: {n}");
    assert!(
        seen.last().is_some_and(|l| l.2 == 0),
        "progress ends at zero: {seen:?}"
    );
    let backlog = basalt_service::privacy::rotation_backlog(&ctx2)
        .await
        .unwrap();
    assert_eq!(backlog, vec![("people".to_string(), 0)]);

    // k1 leaves the ring: every value still reads, every email is still found.
    let (_ctx3, url3) = with_ring(&app, &format!("k2:{}", key(2))).await;
    let list: Value = client
        .get(format!("{url3}/api/collections/people/records?perPage=500"))
        .bearer_auth(&su)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 120 + made.len());
    for it in items.iter().filter(|it| it["id"] != victim.as_str()) {
        assert!(
            it["email"].as_str().unwrap().ends_with("@example.com"),
            "{it}"
        );
        assert!(it["phone"].as_str().unwrap().starts_with("+1 555"), "{it}");
    }
    for e in [
        "p7@example.com",
        made[0].as_str(),
        made.last().unwrap().as_str(),
    ] {
        let r: Value = client
            .get(format!("{url3}/api/collections/people/records"))
            .query(&[("filter", format!("email = '{e}'"))])
            .bearer_auth(&su)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["items"].as_array().unwrap().len(), 1, "{e}: {r}");
    }
    // Unique holds across the key change: p7 was indexed under k1, then re-keyed under k2.
    let dup = client
        .post(format!("{url3}/api/collections/people/records"))
        .bearer_auth(&su)
        .json(&json!({"email": "p7@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 400);
    let h = app.get("/api/health", app.su()).await;
    assert_eq!(h.1["data"]["pii"]["primary"], "k1", "{}", h.1);
    assert!(
        h.1["data"]["pii"]["rotation"]["behind"]["people"]
            .as_i64()
            .unwrap()
            > 100,
        "{}",
        h.1
    );
    assert!(
        !h.1.to_string().contains(&key(1)),
        "no key material in health"
    );
}

/// `[pii] require_tls`: once pii fields exist, a request from another host must come through a
/// trusted proxy that terminated TLS (`X-Forwarded-Proto: https`); loopback is always served.
async fn tls_required_from_other_hosts(backend: Backend) {
    let mut o = opts(&format!("k1:{}", key(1)));
    o.pii_require_tls = true;
    let app = spawn_app_with(backend, o).await;
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"trustedProxy": {"headers": ["X-Forwarded-For"], "useLeftmostIP": false}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let from = |proto: Option<&str>| {
        let mut rb = app
            .client
            .get(format!("{}/api/collections/users/records", app.url))
            .bearer_auth(&app.su)
            .header("X-Forwarded-For", "203.0.113.7");
        if let Some(p) = proto {
            rb = rb.header("X-Forwarded-Proto", p);
        }
        rb
    };
    assert_eq!(
        app.send_with(from(None)).await.0,
        200,
        "no pii yet: plain HTTP is fine"
    );
    app.collection(
        json!({"name": "secrets", "fields": [{"name": "v", "type": "text", "pii": {}}]}),
    )
    .await;
    let r = app.send_with(from(None)).await;
    let _ = assert_error(&r, 403);
    assert!(
        r.1["message"].as_str().unwrap().contains("HTTPS"),
        "{}",
        r.1
    );
    assert_eq!(app.send_with(from(Some("http"))).await.0, 403);
    assert_eq!(app.send_with(from(Some("https"))).await.0, 200);
    assert_eq!(
        app.get("/api/collections/users/records", app.su()).await.0,
        200,
        "loopback"
    );
}

/// Waits until `/api/health` lists no pending `pii.<what>` (`encrypting`, `decrypting`).
async fn wait_done(app: &TestApp, what: &str) {
    let mut left = Value::Null;
    for _ in 0..200 {
        let h = app.get("/api/health", app.su()).await;
        left = h.1["data"]["pii"][what].clone();
        if left.as_array().is_some_and(|a| a.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pii.{what} still pending: {left}");
}

/// Marking fields that already hold data as pii: their values are encrypted in the background,
/// while equality, sign-in and masks work throughout; `/api/health` shows what is left.
async fn existing_values_are_encrypted_in_the_background(backend: Backend) {
    let app = spawn_app_with(backend, opts(&format!("k1:{}", key(1)))).await;
    let c = app
        .collection(json!({
            "name": "contacts", "listRule": "", "viewRule": "",
            "fields": [{"name": "email", "type": "email"}, {"name": "phone", "type": "text"}],
            "indexes": ["CREATE UNIQUE INDEX idx_contacts_email ON contacts (email)"]
        }))
        .await;
    for i in 0..450 {
        app.record(
            "contacts",
            json!({"email": format!("c{i}@example.com"), "phone": format!("+1 555 {i:04}")}),
        )
        .await;
    }
    let (uid, _) = app.user("early.bird@example.com").await;
    // Mark them pii: the contacts' email (searchable, under its unique index) and phone, and the
    // users' sign-in email.
    let mut fields = c["fields"].clone();
    for f in fields.as_array_mut().unwrap() {
        match f["name"].as_str().unwrap() {
            "email" => f["pii"] = json!({"searchable": true}),
            "phone" => f["pii"] = json!({"mask": "last4"}),
            _ => {}
        }
    }
    let r = app
        .patch(
            "/api/collections/contacts",
            app.su(),
            json!({"fields": fields}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let users = app.get("/api/collections/users", app.su()).await.1;
    let mut fields = users["fields"].clone();
    for f in fields.as_array_mut().unwrap() {
        if f["name"] == "email" {
            f["pii"] = json!({"searchable": true, "mask": "partial", "revealRule": "id = @request.auth.id"});
        }
    }
    let r = app
        .patch(
            "/api/collections/users",
            app.su(),
            json!({"fields": fields}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        r.1["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "email")
            .unwrap()["pii"]["searchable"],
        true,
        "{}",
        r.1
    );

    // While (and after) the values are encrypted: lookups, sign-in and masks.
    let check = || async {
        let ids = app
            .ids(
                "contacts",
                app.su(),
                &[("filter", "email = 'C447@example.com'")],
            )
            .await;
        assert_eq!(ids.len(), 1);
        let g = app
            .get_q(
                "/api/collections/contacts/records",
                None,
                &[("filter", "id != ''"), ("perPage", "3"), ("sort", "id")],
            )
            .await;
        assert!(
            g.1["items"][0]["phone"]
                .as_str()
                .unwrap()
                .starts_with("****"),
            "{}",
            g.1
        );
        let a = app
            .post(
                "/api/collections/users/auth-with-password",
                None,
                json!({"identity": "Early.Bird@example.com", "password": "password123"}),
            )
            .await;
        assert_eq!(a.0, 200, "{}", a.1);
        assert_eq!(
            a.1["record"]["email"], "early.bird@example.com",
            "her own email, revealed"
        );
        let dup = app
            .post(
                "/api/collections/contacts/records",
                app.su(),
                json!({"email": "c3@example.com"}),
            )
            .await;
        assert_error(&dup, 400);
    };
    check().await;
    wait_done(&app, "encrypting").await;
    check().await;
    // Nothing left in clear: rows, outbox (events from before), old row versions (SQLite's files
    // are rewritten at the end; pg_dump shows live rows).
    let bytes = database_bytes(&app).await;
    for p in [
        "c0@example.com",
        "c449@example.com",
        "+1 555 0123",
        "early.bird@example.com",
    ] {
        assert!(!contains(&bytes, p), "{p} still in clear");
    }
    let me = app
        .get(&format!("/api/collections/users/records/{uid}"), app.su())
        .await;
    assert_eq!(me.1["email"], "early.bird@example.com");

    // And back: removing pii decrypts in the background; the fields are plain for callers at once.
    let email_id = users["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "email")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (coll, field) in [("contacts", "phone"), ("users", "email")] {
        let def = app
            .get(&format!("/api/collections/{coll}"), app.su())
            .await
            .1;
        let mut fields = def["fields"].clone();
        for f in fields.as_array_mut().unwrap() {
            if f["name"] == field {
                f.as_object_mut().unwrap().remove("pii");
            }
        }
        let r = app
            .patch(
                &format!("/api/collections/{coll}"),
                app.su(),
                json!({"fields": fields}),
            )
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
        let f = r.1["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == field)
            .unwrap()
            .clone();
        assert!(
            f.get("pii").is_none(),
            "plain at once in the definition: {f}"
        );
    }
    let check_plain = || async {
        let g = app
            .get_q(
                "/api/collections/contacts/records",
                None,
                &[("filter", "email = 'c5@example.com'")],
            )
            .await;
        assert_eq!(
            g.1["items"][0]["phone"], "+1 555 0005",
            "no mask any more: {}",
            g.1
        );
        let a = app
            .post(
                "/api/collections/users/auth-with-password",
                None,
                json!({"identity": "EARLY.bird@example.com", "password": "password123"}),
            )
            .await;
        assert_eq!(a.0, 200, "{}", a.1);
        let dup = app
            .post(
                "/api/collections/users/records",
                None,
                json!({"email": "early.bird@example.com", "password": "password123", "passwordConfirm": "password123"}),
            )
            .await;
        let d = assert_error(&dup, 400);
        assert_eq!(d["email"]["code"], "validation_not_unique", "{}", dup.1);
    };
    check_plain().await;
    wait_done(&app, "decrypting").await;
    check_plain().await;
    // The blind index column is gone, the values are stored in clear again.
    let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
    q.push("SELECT * FROM users LIMIT 1");
    let cols = app.store().query(&q).await.unwrap().columns;
    assert!(
        !cols.contains(&format!("_bi_{email_id}")) && !cols.contains(&"_pii".to_string()),
        "the hidden columns are dropped: {cols:?}"
    );
    let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
    q.push("SELECT COUNT(*) FROM contacts WHERE phone = '+1 555 0123'");
    assert_eq!(app.store().query(&q).await.unwrap().scalar_int(), 1);
}

/// With a key ring, `/api/crons` lists `__basaltPiiRotate__`; running it finishes a rotation: after
/// a new primary key, no record is left under the old one.
async fn rotation_as_a_cron_job(backend: Backend) {
    let app = spawn_app_with(backend, opts(&format!("k1:{}", key(1)))).await;
    app.collection(json!({
        "name": "people",
        "fields": [{"name": "email", "type": "email", "pii": {"searchable": true}}]
    }))
    .await;
    for i in 0..5 {
        app.record("people", json!({"email": format!("c{i}@example.com")}))
            .await;
    }
    let (ctx2, url2) = with_ring(&app, &format!("k2:{},k1:{}", key(2), key(1))).await;
    let backlog = || async {
        basalt_service::privacy::rotation_backlog(&ctx2)
            .await
            .unwrap()
    };
    assert_eq!(backlog().await, vec![("people".to_string(), 5)]);
    let client = reqwest::Client::new();
    let jobs: Value = client
        .get(format!("{url2}/api/crons"))
        .bearer_auth(&app.su)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jobs.as_array()
            .unwrap()
            .contains(&json!({"id": "__basaltPiiRotate__", "expression": "30 3 * * *"})),
        "{jobs}"
    );
    let r = client
        .post(format!("{url2}/api/crons/__basaltPiiRotate__"))
        .bearer_auth(&app.su)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(backlog().await, vec![("people".to_string(), 0)]);
}

/// Account `i`'s score and profile in `number_json_and_searchable_changes`.
fn account(i: u32) -> (Value, Value) {
    let score = if i.is_multiple_of(7) {
        json!(0)
    } else if i.is_multiple_of(2) {
        json!(7_770_000 + i)
    } else {
        json!(f64::from(i) + 0.5)
    };
    let profile = if i.is_multiple_of(5) {
        Value::Null
    } else {
        json!({"secret": format!("zq-profile-{i}"), "n": i})
    };
    (score, profile)
}

/// Every account as a superuser reads it, by nick.
async fn accounts(app: &TestApp) -> std::collections::BTreeMap<String, (Value, Value)> {
    let r = app
        .get_q(
            "/api/collections/accounts/records",
            app.su(),
            &[("perPage", "500"), ("sort", "id")],
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    r.1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["nick"].as_str().unwrap().to_string(),
                (r["score"].clone(), r["profile"].clone()),
            )
        })
        .collect()
}

/// Number and json fields marked pii after they held data: their column becomes TEXT and the values
/// are encrypted in the background (read the same throughout, masked for others), then pii removed:
/// decrypted, and the column gets its type back (range filters work again). A blind index turned on
/// later is filled in the same change (equality and a unique index see every row; duplicates refuse
/// the change and leave it as it was); turned off, its column goes.
async fn number_json_and_searchable_changes(backend: Backend) {
    let app = spawn_app_with(backend, opts(&format!("k1:{}", key(1)))).await;
    app.collection(json!({
        "name": "accounts", "listRule": "", "viewRule": "",
        "fields": [
            {"name": "score", "type": "number"},
            {"name": "profile", "type": "json"},
            {"name": "nick", "type": "text", "pii": {"revealRule": ""}}
        ]
    }))
    .await;
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..250u32 {
        let (score, profile) = account(i);
        let nick = format!("nick-{i}");
        app.record(
            "accounts",
            json!({"score": score, "profile": profile, "nick": nick}),
        )
        .await;
        expected.insert(nick, (score, profile));
    }
    assert_eq!(accounts(&app).await, expected);

    // Mark score and profile pii (superusers only; others get null).
    let r = change_fields(&app, "accounts", |name, f| {
        if name == "score" || name == "profile" {
            f.insert("pii".into(), json!({}));
        }
    })
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let guest_sees_masks = || async {
        let g = app
            .get_q(
                "/api/collections/accounts/records",
                None,
                &[("perPage", "500")],
            )
            .await;
        let a = g.1["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["nick"] == "nick-12")
            .unwrap()
            .clone();
        assert_eq!(a["score"], Value::Null, "{a}");
        assert_eq!(a["profile"], Value::Null, "{a}");
    };
    assert_eq!(accounts(&app).await, expected, "while encrypting");
    guest_sees_masks().await;
    wait_done(&app, "encrypting").await;
    assert_eq!(accounts(&app).await, expected, "encrypted");
    guest_sees_masks().await;
    // A range on a pii number is refused, naming the field.
    let r = app
        .get_q(
            "/api/collections/accounts/records",
            app.su(),
            &[("filter", "score > 5")],
        )
        .await;
    let d = assert_error(&r, 400);
    assert!(d.to_string().contains("score"), "{}", r.1);
    let bytes = database_bytes(&app).await;
    for p in ["zq-profile-", "7770010", "7770248"] {
        assert!(!contains(&bytes, p), "{p} still in clear");
    }

    // A blind index on nick, with a unique index: a duplicate refuses the change, which then
    // changes nothing.
    let dup = app
        .record("accounts", json!({"score": 1, "nick": "nick-17"}))
        .await;
    let searchable = |name: &str, f: &mut serde_json::Map<String, Value>| {
        if name == "nick" {
            f.insert("pii".into(), json!({"revealRule": "", "searchable": true}));
        }
    };
    let unique = json!(["CREATE UNIQUE INDEX idx_accounts_nick ON accounts (nick)"]);
    let def = app.get("/api/collections/accounts", app.su()).await.1;
    let mut fields = def["fields"].clone();
    for f in fields.as_array_mut().unwrap() {
        let name = f["name"].as_str().unwrap().to_string();
        searchable(&name, f.as_object_mut().unwrap());
    }
    let body = json!({"fields": fields, "indexes": unique});
    let r = app
        .patch("/api/collections/accounts", app.su(), body.clone())
        .await;
    let d = assert_error(&r, 400);
    assert!(d["indexes"].to_string().contains("duplicate"), "{}", r.1);
    let still = app.get("/api/collections/accounts", app.su()).await.1;
    assert_eq!(still["indexes"], json!([]), "{still}");
    assert!(
        still["fields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["pii"]["searchable"] != true),
        "{still}"
    );
    let r = app
        .delete(
            &format!(
                "/api/collections/accounts/records/{}",
                dup["id"].as_str().unwrap()
            ),
            app.su(),
        )
        .await;
    assert_eq!(r.0, 204);
    let r = app.patch("/api/collections/accounts", app.su(), body).await;
    assert_eq!(r.0, 200, "{}", r.1);
    for i in [0, 17, 249] {
        let ids = app
            .ids(
                "accounts",
                None,
                &[("filter", &format!("nick = 'nick-{i}'"))],
            )
            .await;
        assert_eq!(ids.len(), 1, "nick-{i} found by its blind index");
    }
    let again = app
        .post(
            "/api/collections/accounts/records",
            app.su(),
            json!({"nick": "nick-17"}),
        )
        .await;
    let d = assert_error(&again, 400);
    assert_eq!(d["nick"]["code"], "validation_not_unique", "{}", again.1);

    // Remove pii from score and profile: plain for callers at once, decrypted in the background,
    // then their columns are numbers and json again.
    let r = change_fields(&app, "accounts", |name, f| {
        if name == "score" || name == "profile" {
            f.remove("pii");
        }
    })
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(accounts(&app).await, expected, "while decrypting");
    wait_done(&app, "decrypting").await;
    assert_eq!(accounts(&app).await, expected, "decrypted");
    let g = app
        .get_q(
            "/api/collections/accounts/records",
            None,
            &[("filter", "nick = 'nick-12'")],
        )
        .await;
    assert_eq!(g.1["items"][0]["score"], json!(7_770_012), "{}", g.1);
    assert_eq!(
        g.1["items"][0]["profile"]["secret"], "zq-profile-12",
        "{}",
        g.1
    );
    let over: Vec<_> = expected
        .values()
        .filter(|(s, _)| s.as_f64().unwrap() > 7_770_100.0)
        .collect();
    let ids = app
        .ids(
            "accounts",
            app.su(),
            &[("filter", "score > 7770100"), ("perPage", "500")],
        )
        .await;
    assert_eq!(ids.len(), over.len(), "a range on the number column again");
    let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
    q.push("SELECT COUNT(*) FROM accounts WHERE score = 7770010");
    assert_eq!(app.store().query(&q).await.unwrap().scalar_int(), 1);
    let ids = app
        .ids("accounts", app.su(), &[("filter", "profile.n = 33")])
        .await;
    assert_eq!(ids.len(), 1, "a json path into the json column again");

    // The blind index off (its unique index first): its column is dropped, equality refused.
    let r = app
        .patch(
            "/api/collections/accounts",
            app.su(),
            json!({"indexes": []}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let nick_id = r.1["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "nick")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = change_fields(&app, "accounts", |name, f| {
        if name == "nick" {
            f.insert("pii".into(), json!({"revealRule": ""}));
        }
    })
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
    q.push("SELECT * FROM accounts LIMIT 1");
    let cols = app.store().query(&q).await.unwrap().columns;
    assert!(!cols.contains(&format!("_bi_{nick_id}")), "{cols:?}");
    let r = app
        .get_q(
            "/api/collections/accounts/records",
            None,
            &[("filter", "nick = 'nick-3'")],
        )
        .await;
    assert_error(&r, 400);
}

/// The CloudEvent `data` of the `people` events in a JetStream stream, once there are `n` (the
/// stream also carries other collections' events: the reveal audit's).
async fn stream_events(js: &async_nats::jetstream::Context, stream: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..100 {
        let total = match js.get_stream(stream).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        out.clear();
        if total > 0 {
            for m in crate::events::stream_messages(js, stream, total as usize).await {
                let v: Value = serde_json::from_slice(&m.payload).unwrap();
                if v["data"]["collectionName"] == "people" {
                    out.push(v["data"].clone());
                }
            }
            if out.len() >= n {
                return out;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{stream}: {} people events of {n}: {out:?}", out.len());
}

/// A sink configured with `reveal_pii` receives the values in clear (creates, updates with their
/// `before`, deletes), audited as `sink:<name>`; a sink beside it gets the masks. What the outbox
/// keeps for it is sealed (nothing in clear at rest), and an erasure removes it from the record's
/// events.
async fn revealing_sink(backend: Backend) {
    let tag = basalt_core::id::random_id(8).to_uppercase();
    let mut o = opts(&format!("k1:{}", key(1)));
    o.events.poll_ms = 100;
    // Delivered events stay in the outbox for this test to read.
    o.events.prune_ms = 3_600_000;
    let nats = |name: &str, reveal: bool| basalt_events::config::NatsConfig {
        name: name.into(),
        url: "nats://127.0.0.1:4222".into(),
        stream: format!("PII_{}_{tag}", name.to_uppercase()),
        subject_prefix: format!("pii{name}{tag}"),
        reveal_pii: reveal,
        ..Default::default()
    };
    o.events.nats = vec![nats("clear", true), nats("masked", false)];
    let app = spawn_app_with(backend, o).await;
    app.collection(json!({
        "name": "people", "listRule": "", "viewRule": "",
        "fields": [
            {"name": "email", "type": "email", "pii": {"searchable": true, "mask": "partial"}},
            {"name": "phone", "type": "text", "pii": {"mask": "last4"}},
            {"name": "ssn", "type": "text", "pii": {}},
            {"name": "note", "type": "text"}
        ]
    }))
    .await;
    let ann = app
        .record(
            "people",
            json!({"email": "ann.reveal@example.com", "phone": "+44 7700 900111", "ssn": "078-05-1120", "note": "n1"}),
        )
        .await;
    let ann_id = ann["id"].as_str().unwrap().to_string();
    let r = app
        .patch(
            &format!("/api/collections/people/records/{ann_id}"),
            app.su(),
            json!({"phone": "+44 7700 900222"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let bob = app
        .record(
            "people",
            json!({"email": "bob.reveal@example.com", "phone": "+44 7700 900333"}),
        )
        .await;
    let bob_id = bob["id"].as_str().unwrap().to_string();
    let r = app
        .delete(
            &format!("/api/collections/people/records/{ann_id}"),
            app.su(),
        )
        .await;
    assert_eq!(r.0, 204);
    // Nothing in clear at rest, the sealed copies in the outbox included.
    let bytes = database_bytes(&app).await;
    for p in [
        "ann.reveal@example.com",
        "+44 7700 900222",
        "bob.reveal",
        "078-05-1120",
    ] {
        assert!(!contains(&bytes, p), "{p} in clear at rest");
    }
    let client = async_nats::connect("127.0.0.1:4222").await.unwrap();
    let js = async_nats::jetstream::new(client);
    let clear = stream_events(&js, &format!("PII_CLEAR_{tag}"), 4).await;
    let masked = stream_events(&js, &format!("PII_MASKED_{tag}"), 4).await;
    let pick = |evs: &[Value], id: &str, action: &str| {
        evs.iter()
            .find(|d| {
                d["action"] == action
                    && d["record"]["id"].as_str().or(d["before"]["id"].as_str()) == Some(id)
            })
            .unwrap_or_else(|| panic!("no {action} of {id} in {evs:?}"))
            .clone()
    };
    let c = pick(&clear, &ann_id, "create");
    assert_eq!(c["record"]["email"], "ann.reveal@example.com", "{c}");
    assert_eq!(c["record"]["phone"], "+44 7700 900111", "{c}");
    assert_eq!(
        c["record"]["ssn"], "078-05-1120",
        "a redacted field too: {c}"
    );
    let u = pick(&clear, &ann_id, "update");
    assert_eq!(u["record"]["phone"], "+44 7700 900222", "{u}");
    assert_eq!(u["before"]["phone"], "+44 7700 900111", "{u}");
    let d = pick(&clear, &ann_id, "delete");
    assert_eq!(d["before"]["email"], "ann.reveal@example.com", "{d}");
    assert_eq!(
        pick(&clear, &bob_id, "create")["record"]["email"],
        "bob.reveal@example.com"
    );
    for e in &masked {
        let text = e.to_string();
        assert!(
            !text.contains("reveal@example.com") && !text.contains("900111"),
            "{text}"
        );
    }
    let m = pick(&masked, &ann_id, "update");
    assert_eq!(m["record"]["phone"], "****0222", "{m}");
    assert_eq!(m["record"]["ssn"], Value::Null, "{m}");
    assert_eq!(m["record"]["note"], "n1", "{m}");
    // Audited: the revealing sink is the actor.
    let rows = wait_for(&app, "_piiAudit", "actor = 'sink:nats:clear'", 2).await;
    assert!(
        rows.iter()
            .any(|r| r["recordRef"] == ann_id && r["route"] == "events"),
        "{rows:?}"
    );
    assert!(!audit_bytes(&rows).contains("ann.reveal"));

    // Erasure: bob's events in the outbox keep nothing sealed, and its own event reveals nothing.
    let r = app
        .post(
            "/api/pii/erase",
            app.su(),
            json!({"collection": "people", "id": bob_id}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
    q.push("SELECT data FROM _events WHERE record_id = ")
        .bind(basalt_core::sql::Value::Text(bob_id.clone()));
    let rows = app.store().query(&q).await.unwrap().rows;
    assert_eq!(rows.len(), 2, "bob's create and erasure events");
    for r in rows {
        let data = r.into_iter().next().unwrap().into_string();
        assert!(!data.contains("\"sealed\""), "{data}");
    }
    let clear = stream_events(&js, &format!("PII_CLEAR_{tag}"), 5).await;
    let e = pick(&clear, &bob_id, "update");
    assert_eq!(e["record"]["email"], Value::Null, "{e}");
    assert_ne!(e["before"]["email"], "bob.reveal@example.com", "{e}");
    for s in ["CLEAR", "MASKED"] {
        let _ = js.delete_stream(format!("PII_{s}_{tag}")).await;
    }

    // Rotation: the sealed events are in the backlog under the old key, rewrapped under the new
    // one, and then open with the new key alone.
    let sealed = || async {
        let mut q = basalt_core::sql::Sql::new(app.ctx.dialect());
        q.push("SELECT data FROM _events WHERE data LIKE '%\"sealed\":%'");
        app.store()
            .query(&q)
            .await
            .unwrap()
            .rows
            .into_iter()
            .map(|r| r.into_iter().next().unwrap().into_string())
            .collect::<Vec<_>>()
    };
    assert!(
        sealed().await.len() >= 3,
        "ann's events are still in the outbox, sealed"
    );
    let (ctx2, _) = with_ring(&app, &format!("k2:{},k1:{}", key(2), key(1))).await;
    let events_behind = |b: Vec<(String, i64)>| {
        b.into_iter()
            .find(|(c, _)| c == "_events")
            .map_or(0, |(_, n)| n)
    };
    let behind = basalt_service::privacy::rotation_backlog(&ctx2)
        .await
        .unwrap();
    assert!(events_behind(behind) >= 3);
    basalt_service::privacy::rotate(&ctx2, |_, _, _| {})
        .await
        .unwrap();
    let behind = basalt_service::privacy::rotation_backlog(&ctx2)
        .await
        .unwrap();
    assert_eq!(events_behind(behind), 0);
    for d in sealed().await {
        assert!(d.contains("\"sealed\":\"k2."), "{d}");
    }
    let (ctx3, _) = with_ring(&app, &format!("k2:{}", key(2))).await;
    let events = basalt_events::outbox::read(app.store().as_ref(), 0, i64::MAX, 1000)
        .await
        .unwrap();
    let create = events
        .iter()
        .find(|e| e.record_id == ann_id && e.action == basalt_events::Action::Create)
        .unwrap();
    let (opened, fields) = basalt_service::pii::open_event(&ctx3, create).unwrap();
    assert_eq!(fields, ["email", "phone", "ssn"]);
    assert_eq!(
        opened.record.as_ref().unwrap()["email"],
        "ann.reveal@example.com"
    );
}

crate::both_backends!(
    revealing_sink,
    number_json_and_searchable_changes,
    rotation_as_a_cron_job,
    existing_values_are_encrypted_in_the_background,
    tls_required_from_other_hosts,
    at_rest_search_and_masks,
    definitions_are_checked,
    rotation_and_erasure
);
