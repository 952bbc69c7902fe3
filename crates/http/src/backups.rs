//! `/api/backups` over HTTP; the backups themselves are `basalt_service::backups`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use basalt_service::backups;
use basalt_service::request::parse_query;
use serde_json::Value as Json;

use crate::error::{ApiResult, JsonBody};
use crate::extract::Client;
use crate::handlers::ok_json;
use crate::AppCtx;

/// `GET /api/backups`.
pub async fn list(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    Ok(ok_json(backups::list(&ctx, &req).await?))
}

/// `POST /api/backups` `{name?}`.
pub async fn create(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    backups::create(&ctx, &req, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/backups/upload` (multipart `file`).
pub async fn upload(
    State(ctx): State<AppCtx>,
    Client(client): Client,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    if let Err(e) = backups::guard(&ctx, &client) {
        crate::files::upload::drain(req).await;
        return Err(e.into());
    }
    let body = match crate::files::upload::read(&ctx.files.tmp_dir(), req, 64 << 30, u64::MAX).await
    {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    backups::upload(&ctx, &client, body.uploads).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/backups/{key}`.
pub async fn delete(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    backups::delete(&ctx, &req, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/backups/{key}?token=<superuser file token>`.
pub async fn download(
    State(ctx): State<AppCtx>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let q = parse_query(raw.as_deref().unwrap_or(""));
    let token = q.get("token").and_then(Json::as_str).unwrap_or("");
    let st = backups::download(&ctx, token, &key).await?;
    Ok(
        match crate::files::serve::respond(&st, &key, &key, true, true, &headers).await {
            Ok(r) | Err(r) => r,
        },
    )
}

/// `POST /api/backups/{key}/restore`.
pub async fn restore(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    backups::restore(&ctx, &req, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
