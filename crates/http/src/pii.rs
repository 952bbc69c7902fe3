//! PII protection's API (the operations are `basalt_service::pii`).
//!
//! | Method | Path | |
//! |---|---|---|
//! | POST | `/api/pii/erase` | superusers: crypto-shred one subject (`{"collection", "id"}`) |
//! | GET | `/api/pii/export/{collection}/{id}` | the subject's record, pii in clear per `revealRule` (viewRule applies) |
//! | POST | `/api/pii/rotate` | superusers: rewrap every data key under the primary key, in the background |
//! | GET | `/api/pii/rotate` | superusers: key ids, the primary, the rotation backlog, audit counters |

use axum::extract::{Path, State};
use axum::response::Response;
use basalt_core::{FieldError, FieldErrors};
use serde_json::Value as Json;

use crate::error::{ApiError, ApiResult, JsonBody};
use crate::extract::Client;
use crate::handlers::ok_json;
use crate::AppCtx;

pub async fn erase(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    req.require_superuser()?;
    let s = |k: &str| body.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    let (c, id) = (s("collection"), s("id"));
    let mut errs = FieldErrors::new();
    for (k, v) in [("collection", &c), ("id", &id)] {
        if v.is_empty() {
            errs.insert(k.into(), FieldError::required());
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::from(basalt_service::error::ServiceError(
            basalt_core::Error::validation("Failed to erase.", errs),
        )));
    }
    Ok(ok_json(
        basalt_service::privacy::erase(&ctx, &c, &id).await?,
    ))
}

pub async fn export(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path((c, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(ok_json(
        basalt_service::privacy::export(&ctx, &req, &c, &id).await?,
    ))
}

pub async fn rotate(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    Ok(ok_json(basalt_service::privacy::start_rotation(
        &ctx, &req,
    )?))
}

pub async fn status(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    req.require_superuser()?;
    Ok(ok_json(basalt_service::privacy::status(&ctx).await?))
}
