//! Webhook management for superusers: CRUD of definitions, the dead-letter list and replay.
//!
//! | Method | Path | |
//! |---|---|---|
//! | GET/POST | `/api/webhooks` | list / create (`url`, `secret` ≥16 chars, `collection` or `*`, `events`, `active`, `timeoutMs`, `maxAttempts`, `concurrency`) |
//! | GET/PATCH/DELETE | `/api/webhooks/{id}` | view / update / delete (its queued deliveries go too) |
//! | GET | `/api/webhooks/deliveries?status=dead|pending&webhook=ID` | the dead-letter list (default) or the queue |
//! | POST | `/api/webhooks/deliveries/{id}/replay` | a dead delivery back into the queue |

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json as AxJson;
use basalt_core::Error;
use basalt_events::webhook::Webhooks;
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;

use crate::error::{bad, not_found, ApiError, ApiResult, JsonBody};
use crate::extract::Client;
use crate::AppCtx;

fn hooks(ctx: &AppCtx) -> ApiResult<Arc<Webhooks>> {
    ctx.webhooks
        .get()
        .cloned()
        .ok_or_else(|| ApiError(Error::internal("webhooks are not started")))
}

fn object(body: Json) -> ApiResult<Map<String, Json>> {
    match body {
        Json::Object(m) => Ok(m),
        _ => Err(bad("The request body must be a JSON object.")),
    }
}

pub async fn list(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    req.require_superuser()?;
    let items: Vec<Json> = hooks(&ctx)?.list().iter().map(|w| w.public()).collect();
    Ok(AxJson(json!({"items": items, "totalItems": items.len()})).into_response())
}

pub async fn create(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    req.require_superuser()?;
    let body = object(body)?;
    let c = ctx.clone();
    let w = hooks(&ctx)?
        .save(&body, None, &move |k| c.collection(k).is_some())
        .await?;
    ctx.announce(basalt_cluster::bus::Msg::Webhooks).await;
    Ok(AxJson(w.public()).into_response())
}

pub async fn view(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    req.require_superuser()?;
    let w = hooks(&ctx)?.get(&id).ok_or_else(not_found)?;
    Ok(AxJson(w.public()).into_response())
}

pub async fn update(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    req.require_superuser()?;
    let body = object(body)?;
    let h = hooks(&ctx)?;
    let existing = h.get(&id).ok_or_else(not_found)?;
    let c = ctx.clone();
    let w = h
        .save(&body, Some(existing), &move |k| c.collection(k).is_some())
        .await?;
    ctx.announce(basalt_cluster::bus::Msg::Webhooks).await;
    Ok(AxJson(w.public()).into_response())
}

pub async fn delete(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    req.require_superuser()?;
    if !hooks(&ctx)?.delete(&id).await? {
        return Err(not_found());
    }
    ctx.announce(basalt_cluster::bus::Msg::Webhooks).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn deliveries(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    req.require_superuser()?;
    let q = basalt_service::request::parse_query(raw.as_deref().unwrap_or(""));
    let status = q.get("status").and_then(Json::as_str).unwrap_or("dead");
    if !matches!(status, "dead" | "pending") {
        return Err(bad("status must be dead or pending."));
    }
    let webhook = q.get("webhook").and_then(Json::as_str);
    let items = hooks(&ctx)?.deliveries(status, webhook, 500).await?;
    Ok(AxJson(json!({"items": items, "totalItems": items.len()})).into_response())
}

pub async fn replay(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    req.require_superuser()?;
    if !hooks(&ctx)?.replay(&id).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}
