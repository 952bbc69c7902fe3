//! The service layer without a transport: what a GraphQL or gRPC front would get by calling it.
//! Rate limits and sign-in checks are applied by the service on the typed action, so a caller that
//! never went through the HTTP middleware is limited exactly as a REST client is, and shares its
//! bucket.

use std::net::IpAddr;

use basalt_core::Error;
use basalt_service::auth::flows::{self, SignIn};
use basalt_service::{crud, Req};
use serde_json::json;

use crate::helpers::TestApp;

fn caller(ip: &str) -> Req {
    Req {
        ip: ip.parse::<IpAddr>().unwrap(),
        method: "GET".into(),
        path: "/graphql-or-anything".into(),
        ..Default::default()
    }
}

async fn limits_apply_to_direct_service_calls(app: TestApp) {
    app.collection(
        json!({"name": "lim", "listRule": "", "fields": [{"name": "v", "type": "text"}]}),
    )
    .await;
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"rateLimits": {"enabled": true, "rules": [
                {"label": "lim:list", "maxRequests": 2, "duration": 60, "audience": ""},
                {"label": "*:auth", "maxRequests": 1, "duration": 60, "audience": ""}
            ]}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    // The test's REST client comes from 127.0.0.1: a direct call from that address draws on the
    // same bucket, so one REST list and one direct list use up the budget of two.
    assert_eq!(app.get("/api/collections/lim/records", None).await.0, 200);
    let local = caller("127.0.0.1");
    assert!(crud::list(&app.ctx, &local, "lim").await.is_ok());
    match crud::list(&app.ctx, &local, "lim").await {
        Err(e) => assert!(
            matches!(e.0, Error::TooManyRequests { .. }),
            "third list: {e}"
        ),
        Ok(_) => panic!("the third list within the window was admitted"),
    }
    assert_eq!(
        app.get("/api/collections/lim/records", None).await.0,
        429,
        "REST is refused once direct calls used the budget"
    );
    // Another client is not affected.
    let req = caller("10.9.8.7");
    assert!(crud::list(&app.ctx, &req, "lim").await.is_ok());

    // A sign-in made directly on the service counts against `*:auth` like the REST endpoint.
    let body = json!({"identity": "nobody@example.com", "password": "wrong-password"});
    let first = flows::auth_with_password(&app.ctx, &req, "users", &body).await;
    assert!(
        matches!(&first, Err(e) if matches!(e.0, Error::BadRequest(_))),
        "a wrong password is a 400"
    );
    match flows::auth_with_password(&app.ctx, &req, "users", &body).await {
        Err(e) => assert!(matches!(e.0, Error::TooManyRequests { .. }), "{e}"),
        Ok(_) => panic!("the second sign-in was admitted"),
    }
}

async fn sign_in_outcomes_are_typed(app: TestApp) {
    let r = app
        .post(
            "/api/collections/users/records",
            app.su(),
            json!({"email": "ana@example.com", "password": "a-long-password", "passwordConfirm": "a-long-password"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let body = json!({"identity": "ana@example.com", "password": "a-long-password"});
    match flows::auth_with_password(&app.ctx, &caller("10.1.1.1"), "users", &body).await {
        Ok(SignIn::Token(b)) => {
            assert_eq!(b["record"]["email"], "ana@example.com");
            assert!(b["token"].as_str().is_some_and(|t| t.len() > 20));
            assert!(b["record"].get("password").is_none());
        }
        other => panic!("expected a token, got {other:?}"),
    }
    // With MFA on, the same call ends in MfaRequired, not a token.
    let users = app.get("/api/collections/users", app.su()).await.1;
    let r = app
        .patch(
            &format!("/api/collections/{}", users["id"].as_str().unwrap()),
            app.su(),
            json!({"mfa": {"enabled": true, "duration": 600}, "otp": {"enabled": true}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    match flows::auth_with_password(&app.ctx, &caller("10.1.1.1"), "users", &body).await {
        Ok(SignIn::MfaRequired { mfa_id }) => assert_eq!(mfa_id.len(), 15),
        other => panic!("expected the MFA challenge, got {other:?}"),
    }
}

/// A rate-limited write is refused before its body is read: a malformed body gets the 429, not
/// the 400 it would get if the server had parsed it first.
async fn writes_are_admitted_before_the_body_is_read(app: TestApp) {
    app.collection(
        json!({"name": "limw", "createRule": "", "fields": [{"name": "v", "type": "text"}]}),
    )
    .await;
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"rateLimits": {"enabled": true, "rules": [
                {"label": "limw:create", "maxRequests": 1, "duration": 60, "audience": ""}
            ]}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let bad = || {
        app.raw(
            reqwest::Method::POST,
            "/api/collections/limw/records",
            None,
            "application/json",
            b"{not json".to_vec(),
        )
    };
    assert_eq!(bad().await.0, 400, "within the budget the body is parsed");
    assert_eq!(bad().await.0, 429, "past it, refused before parsing");
}

crate::both!(
    limits_apply_to_direct_service_calls,
    sign_in_outcomes_are_typed,
    writes_are_admitted_before_the_body_is_read
);
