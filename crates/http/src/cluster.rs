//! The probes over HTTP (`/livez`, `/readyz`). Joining and leaving the cluster is
//! `basalt_service::cluster`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppCtx;

/// `GET /livez`: the process runs and its runtime answers.
pub async fn livez() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

/// `GET /readyz`: 200 when this node takes traffic (started, not draining, database reachable).
pub async fn readyz(State(ctx): State<AppCtx>) -> Response {
    match basalt_service::cluster::readiness(&ctx).await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response(),
        Err(body) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response(),
    }
}
