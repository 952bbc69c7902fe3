//! Password auth, tokens, refresh, auth-methods, password change and token revocation.

use serde_json::json;

use crate::helpers::{assert_error, TestApp};

async fn login_refresh_and_methods(app: TestApp) {
    let (id, tok) = app.user("login@example.com").await;
    let parts: Vec<&str> = tok.split('.').collect();
    assert_eq!(parts.len(), 3);
    let r = app
        .post(
            "/api/collections/users/auth-refresh",
            Some(&format!("Bearer {tok}")),
            json!({}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["record"]["id"], json!(id));
    assert_eq!(r.1["record"]["email"], "login@example.com");
    let bad = app
        .post(
            "/api/collections/users/auth-with-password",
            None,
            json!({"identity": "login@example.com", "password": "wrong-pass"}),
        )
        .await;
    assert_eq!(
        bad.1,
        json!({"data": {}, "message": "Failed to authenticate.", "status": 400})
    );
    let unknown = app
        .post(
            "/api/collections/users/auth-with-password",
            None,
            json!({"identity": "nobody@example.com", "password": "wrong-pass"}),
        )
        .await;
    assert_eq!(unknown.1, bad.1, "unknown and wrong look the same");
    let m = app.get("/api/collections/users/auth-methods", None).await;
    assert_eq!(
        m.1["password"],
        json!({"enabled": true, "identityFields": ["email"]})
    );
    assert_error(
        &app.post("/api/collections/users/auth-refresh", None, json!({}))
            .await,
        401,
    );
    assert_error(
        &app.post("/api/collections/users/auth-refresh", app.su(), json!({}))
            .await,
        403,
    );
}

async fn bad_tokens_make_guests(app: TestApp) {
    app.collection(
        json!({"name": "pub", "listRule": "", "fields": [{"name": "v", "type": "text"}]}),
    )
    .await;
    let (_, tok) = app.user("tok@example.com").await;
    let mut tampered = tok.clone();
    tampered.pop();
    tampered.push(if tok.ends_with('A') { 'B' } else { 'A' });
    for t in ["garbage", "a.b.c", tampered.as_str(), ""] {
        assert_eq!(
            app.get("/api/collections/pub/records", Some(t)).await.0,
            200,
            "{t}"
        );
        assert_error(
            &app.post("/api/collections/users/auth-refresh", Some(t), json!({}))
                .await,
            401,
        );
    }
}

async fn password_change_revokes_tokens(app: TestApp) {
    let (id, tok) = app.user("pw@example.com").await;
    let path = format!("/api/collections/users/records/{id}");
    let r = app
        .patch(
            &path,
            Some(&tok),
            json!({"password": "newpassword1", "passwordConfirm": "newpassword1"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, 400)["oldPassword"]["code"],
        "validation_required"
    );
    let r = app.patch(&path, Some(&tok), json!({"password": "newpassword1", "passwordConfirm": "newpassword1", "oldPassword": "nope-nope"})).await;
    assert_eq!(
        assert_error(&r, 400)["oldPassword"]["code"],
        "validation_invalid_old_password"
    );
    let r = app.patch(&path, Some(&tok), json!({"password": "newpassword1", "passwordConfirm": "newpassword1", "oldPassword": "password123"})).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_error(
        &app.post("/api/collections/users/auth-refresh", Some(&tok), json!({}))
            .await,
        401,
    );
    let ok = app
        .post(
            "/api/collections/users/auth-with-password",
            None,
            json!({"identity": "pw@example.com", "password": "newpassword1"}),
        )
        .await;
    assert_eq!(ok.0, 200);
}

async fn auth_rule_blocks_tokens(app: TestApp) {
    let (_, _) = app.user("unverified@example.com").await;
    app.patch(
        "/api/collections/users",
        app.su(),
        json!({"authRule": "verified = true"}),
    )
    .await;
    let r = app
        .post(
            "/api/collections/users/auth-with-password",
            None,
            json!({"identity": "unverified@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(assert_error(&r, 403), json!({}));
    assert_eq!(
        r.1["message"],
        "The request doesn't satisfy the collection requirements to authenticate."
    );
}

async fn bcrypt_hashes_from_pocketbase_still_log_in(app: TestApp) {
    let (id, _) = app.user("imported@example.com").await;
    let hash = bcrypt::hash("pbpassword", 4).unwrap();
    let mut s = basalt_core::sql::Sql::new(app.store().dialect());
    s.push("UPDATE \"users\" SET \"password\" = ")
        .bind(basalt_core::sql::Value::Text(hash));
    s.push(" WHERE \"id\" = ")
        .bind(basalt_core::sql::Value::Text(id));
    let mut tx = app.store().begin().await.unwrap();
    tx.execute(&s).await.unwrap();
    tx.commit().await.unwrap();
    let r = app
        .post(
            "/api/collections/users/auth-with-password",
            None,
            json!({"identity": "imported@example.com", "password": "pbpassword"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
}

crate::both!(
    login_refresh_and_methods,
    bad_tokens_make_guests,
    password_change_revokes_tokens,
    auth_rule_blocks_tokens,
    bcrypt_hashes_from_pocketbase_still_log_in
);
