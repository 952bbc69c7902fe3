//! The sign-in surface over HTTP: each route decodes its body and calls the matching service flow,
//! which applies rate limits, lockout, the superuser IP guard and MFA itself. [`signin`] is the one
//! encoding of a sign-in outcome: 200 `{record, token, meta?}` or 401 `{mfaId}`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use basalt_service::auth::flows::{self, SignIn};
use basalt_service::auth::{mfa, oauth2};

use crate::error::{ApiResult, JsonBody};
use crate::extract::Client;
use crate::handlers::ok_json;
use crate::AppCtx;

/// A sign-in's answer.
fn signin(r: SignIn) -> Response {
    match r {
        SignIn::Token(body) => ok_json(body),
        SignIn::MfaRequired { mfa_id } => (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "mfaId": mfa_id })),
        )
            .into_response(),
    }
}

/// Routes of actions the service rate-limits itself (sign-ins, refresh, methods, request/confirm).
pub fn routes() -> Router<AppCtx> {
    Router::new()
        .route(
            "/api/collections/{c}/auth-with-password",
            post(auth_with_password),
        )
        .route("/api/collections/{c}/auth-refresh", post(auth_refresh))
        .route("/api/collections/{c}/auth-methods", get(auth_methods))
        .route(
            "/api/collections/{c}/auth-with-oauth2",
            post(auth_with_oauth2),
        )
        .route("/api/collections/{c}/request-otp", post(request_otp))
        .route("/api/collections/{c}/auth-with-otp", post(auth_with_otp))
        .route("/api/collections/{c}/auth-with-totp", post(auth_with_totp))
        .route(
            "/api/collections/{c}/request-verification",
            post(request_verification),
        )
        .route(
            "/api/collections/{c}/confirm-verification",
            post(confirm_verification),
        )
        .route(
            "/api/collections/{c}/request-password-reset",
            post(request_password_reset),
        )
        .route(
            "/api/collections/{c}/confirm-password-reset",
            post(confirm_password_reset),
        )
        .route(
            "/api/collections/{c}/request-email-change",
            post(request_email_change),
        )
        .route(
            "/api/collections/{c}/confirm-email-change",
            post(confirm_email_change),
        )
}

/// Auth routes without a protocol action tag (path-label rate limits only).
pub fn path_routes() -> Router<AppCtx> {
    Router::new()
        .route("/api/collections/{c}/totp/enroll", post(totp_enroll))
        .route("/api/collections/{c}/totp/confirm", post(totp_confirm))
        .route("/api/collections/{c}/totp/disable", post(totp_disable))
        .route("/api/collections/{c}/impersonate/{id}", post(impersonate))
        .route(
            "/api/oauth2-redirect",
            get(oauth2_redirect).post(oauth2_redirect),
        )
        .route("/api/settings/test/email", post(test_email))
        .route(
            "/api/settings/apple/generate-client-secret",
            post(generate_apple_secret),
        )
}

/// Sign-in routes: decode the body, call the flow, encode its [`SignIn`].
macro_rules! signin_route {
    ($name:ident, $f:path) => {
        async fn $name(
            State(ctx): State<AppCtx>,
            Client(req): Client,
            Path(c): Path<String>,
            JsonBody(body): JsonBody,
        ) -> ApiResult<Response> {
            Ok(signin($f(&ctx, &req, &c, &body).await?))
        }
    };
}

signin_route!(auth_with_password, flows::auth_with_password);
signin_route!(auth_with_oauth2, oauth2::auth_with_oauth2);
signin_route!(auth_with_otp, mfa::auth_with_otp);
signin_route!(auth_with_totp, mfa::auth_with_totp);

async fn auth_refresh(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(c): Path<String>,
) -> ApiResult<Response> {
    Ok(ok_json(flows::auth_refresh(&ctx, &req, &c).await?))
}

async fn auth_methods(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(c): Path<String>,
) -> ApiResult<Response> {
    Ok(ok_json(flows::auth_methods(&ctx, &req, &c).await?))
}

async fn request_otp(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(c): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    Ok(ok_json(mfa::request_otp(&ctx, &req, &c, &body).await?))
}

/// Flows answered with 204 on success.
macro_rules! no_content {
    ($name:ident, $f:path) => {
        async fn $name(
            State(ctx): State<AppCtx>,
            Client(req): Client,
            Path(c): Path<String>,
            JsonBody(body): JsonBody,
        ) -> ApiResult<StatusCode> {
            $f(&ctx, &req, &c, &body).await?;
            Ok(StatusCode::NO_CONTENT)
        }
    };
}

no_content!(request_verification, flows::request_verification);
no_content!(confirm_verification, flows::confirm_verification);
no_content!(request_password_reset, flows::request_password_reset);
no_content!(confirm_password_reset, flows::confirm_password_reset);
no_content!(request_email_change, flows::request_email_change);
no_content!(confirm_email_change, flows::confirm_email_change);
no_content!(totp_disable, mfa::totp_disable);

async fn totp_enroll(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(c): Path<String>,
) -> ApiResult<Response> {
    Ok(ok_json(mfa::totp_enroll(&ctx, &req, &c).await?))
}

async fn totp_confirm(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(c): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    Ok(ok_json(mfa::totp_confirm(&ctx, &req, &c, &body).await?))
}

async fn impersonate(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path((c, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    Ok(ok_json(
        flows::impersonate(&ctx, &req, &c, &id, &body).await?,
    ))
}

async fn test_email(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    flows::test_email(&ctx, &req, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn generate_apple_secret(
    Client(req): Client,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    Ok(ok_json(oauth2::generate_apple_secret(&req, &body).await?))
}

/// `GET|POST /api/oauth2-redirect?state&code[&error]`: the provider's redirect in the popup flow.
/// The browser is sent on to `/_/#/auth/oauth2-redirect-success|failure` (307, or 303 after Apple's
/// form POST).
async fn oauth2_redirect(
    State(ctx): State<AppCtx>,
    method: axum::http::Method,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let ok = oauth2::forward_code(&ctx, raw.as_deref().unwrap_or(""), &body);
    let status = if method == axum::http::Method::POST {
        StatusCode::SEE_OTHER
    } else {
        StatusCode::TEMPORARY_REDIRECT
    };
    let to = if ok {
        "../_/#/auth/oauth2-redirect-success"
    } else {
        "../_/#/auth/oauth2-redirect-failure"
    };
    (status, [(axum::http::header::LOCATION, to)]).into_response()
}
